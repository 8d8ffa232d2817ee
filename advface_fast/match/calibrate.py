"""The threshold and eps of a deployment, measured on the operator's own labelled templates.

A running system decides at one fixed threshold, fitted for a false accept rate (FAR). Protection
moves the stored templates, so what it costs is the true accept rate (TAR) lost at that operating
point, not best-threshold accuracy. :func:`calibrate_deployment`:

1. splits the templates into an enrolled gallery (each person's first template) and probes
   (their other templates): the system's situation, fresh captures against stored ones;
2. scores every probe against every enrolled template (genuine: same person; impostors: every
   cross-identity pair) and fits the threshold for ``far`` on the clean gallery (what the system
   runs without protection); a ``far`` the impostor count cannot measure is refused;
3. for each eps of the grid, protects the gallery with the deployment's decoder, key and settings
   and measures TAR at the clean threshold (what a system that forgets to re-fit gets) and at a
   threshold re-fitted on the protected gallery's impostors (what the deployment runs);
4. recommends the largest eps whose TAR loss at the re-fitted threshold is at most
   ``max_tar_loss`` points, and returns its :class:`~.config.DeploymentConfig`.

The rotation does not enter the scores (probes are rotated with the gallery: cosine is
unchanged), so calibration protects without it and records the deployment's ``rotate`` setting.
Recognition only: what protection each eps buys against reconstruction is measured by
``eval-faces`` and ``threat-faces``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from ..keys import KeyLike, key_id, load_key
from ..metrics.operating_point import cross_identity_scores, operating_point, threshold_at_far
from ..protector import Protector
from ..settings import DEFAULT_ALPHA_RATIO, default_eps
from .config import SETTING_KEYS, DeploymentConfig

EPS_MULTIPLES = (0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # of the dimension's default eps (up to the former default)


def tar_loss_points(clean_tar: float, protected_tar: float) -> float:
    """TAR lost, in percentage points, rounded to 1e-9: TARs are fractions of probe counts, so a
    loss of exactly the limit (5 probes of 500: 0.87 - 0.86) compares equal to it, not
    1.0000000000000009 above it."""
    return round(100 * (clean_tar - protected_tar), 9)


def split_enrolment(labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(enrolled rows, probe rows)``: each person's first template is enrolled, the rest are
    probes."""
    lab = np.asarray([str(x) for x in labels])
    _, first = np.unique(lab, return_index=True)
    enrolled = np.sort(first)
    probes = np.setdiff1d(np.arange(len(lab)), enrolled)
    return enrolled, probes


def calibrate_deployment(
    templates: np.ndarray,
    labels: Sequence[Any],
    decoder: nn.Module,
    encoder: Any = None,
    *,
    key: KeyLike,
    rotate: bool = True,
    far: float = 1e-3,
    max_tar_loss: float = 1.0,
    eps_grid: Sequence[float] | None = None,
    ids: np.ndarray | None = None,
    log: Callable[[str], None] = print,
    **settings: Any,
) -> tuple[DeploymentConfig | None, dict[str, Any]]:
    """Measure and recommend (see the module docstring).

    Args:
        templates: ``(N, D)`` clean templates of the operator's people, several per person.
        labels: ``(N,)`` the person of each template.
        decoder, encoder, key, rotate, settings: the deployment's protection (``settings``: other
            :class:`~advface_fast.settings.RunSettings` fields, e.g. ``steps``, ``start``, ``seed``;
            ``alpha`` is ``eps / 5`` at every eps of the grid).
        far: the false accept rate the threshold is fitted for.
        max_tar_loss: the largest acceptable loss of TAR at ``far``, in percentage points.
        eps_grid: the eps values to try (default: 1/8 .. 2 times the dimension's default eps).
        ids: ``(N,)`` enrolment ids (key the random start; default ``0..N-1``).

    Returns:
        ``(config or None, report)``: the configuration of the recommended eps, or None when
        every eps loses more than ``max_tar_loss`` (the report says by how much).
    """
    z = np.asarray(templates, dtype=np.float32)
    lab = np.asarray([str(x) for x in labels])
    if z.ndim != 2 or len(lab) != len(z):
        raise ValueError(f"templates must be (N, D) with one label each, got {z.shape} and {len(lab)} labels")
    if max_tar_loss < 0:
        raise ValueError(f"max_tar_loss must be >= 0, got {max_tar_loss}")
    ids = np.arange(len(z), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    enrolled, probes = split_enrolment(lab)
    if len(probes) == 0 or len(np.unique(lab[probes])) < 2:
        raise ValueError(
            "calibration needs at least two people with two or more templates each (one is enrolled, the others "
            "are probes)"
        )
    dim = z.shape[1]
    grid = sorted(eps_grid) if eps_grid else [round(m * default_eps(dim), 6) for m in EPS_MULTIPLES]
    p, plab, g, glab = z[probes], lab[probes], z[enrolled], lab[enrolled]
    gen, imp = cross_identity_scores(p, plab, g, glab)
    thr_clean = threshold_at_far(imp, far)  # refuses a FAR the impostors cannot measure
    clean = operating_point(gen, imp, far)
    log(
        f"{len(enrolled)} people enrolled, {len(probes)} probes: {len(gen):,} genuine and {len(imp):,} impostor "
        f"scores; clean TAR {100 * clean.tar:.2f}% at FAR {far:g} (threshold {thr_clean:.4f})"
    )
    secret = load_key(key)
    points = []
    unrotated = {k: v for k, v in settings.items() if k != "shards"}  # shards are rotations: no score changes
    for eps in grid:
        prot = Protector(
            decoder, encoder, key=secret, rotate=False, eps=eps, alpha=eps * DEFAULT_ALPHA_RATIO, progress=False,
            **unrotated,
        )  # fmt: skip
        gp = prot(g, row_ids=ids[enrolled])
        gen_p, imp_p = cross_identity_scores(p, plab, gp, glab)
        fixed = operating_point(gen_p, imp_p, threshold=thr_clean)
        refit = operating_point(gen_p, imp_p, far)
        loss = tar_loss_points(clean.tar, refit.tar)
        points.append(
            {"eps": eps, "at_clean_threshold": fixed.as_dict(), "refit": refit.as_dict(), "tar_loss_points": loss}
        )
        log(
            f"eps {eps:g}: TAR {100 * refit.tar:.2f}% at a re-fitted threshold {refit.threshold:.4f} (loss {loss:.2f} "
            f"points); at the clean threshold TAR {100 * fixed.tar:.2f}%, FAR {fixed.far:.2g}"
        )
    ok = [pt for pt in points if pt["tar_loss_points"] <= max_tar_loss]
    report: dict[str, Any] = {
        "far": far,
        "max_tar_loss": max_tar_loss,
        "people": len(enrolled),
        "probes": len(probes),
        "clean": clean.as_dict(),
        "points": points,
    }
    if not ok:
        report["recommendation"] = None
        report["reason"] = (
            f"every eps tried loses more than {max_tar_loss} points of TAR at FAR {far:g} (smallest eps {grid[0]:g}: "
            f"{points[0]['tar_loss_points']:.2f}); try smaller eps values"
        )
        return None, report
    best = max(ok, key=lambda pt: pt["eps"])
    report["recommendation"] = best["eps"]
    prot = Protector(
        decoder, encoder, key=secret, rotate=rotate, eps=best["eps"], alpha=best["eps"] * DEFAULT_ALPHA_RATIO,
        progress=False, **settings,
    )  # fmt: skip
    s = prot.settings(dim)
    config = DeploymentConfig(
        threshold=best["refit"]["threshold"],
        far=far,
        settings={k: s[k] for k in (*SETTING_KEYS, "shards") if k in s},
        key_id=key_id(secret),
        decoder=s["decoder"],
        encoder=prot.encoder_identity(),
        measured=report,
    )
    return config, report
