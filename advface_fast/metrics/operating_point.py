"""Recognition at the operating point a deployed system runs at: one fixed similarity threshold,
chosen for a false accept rate (FAR), and the true accept rate (TAR) it gives.

Scores are cosine similarities (higher: more alike) and the decision rule is
``accept = score > threshold``. :func:`threshold_at_far` picks the threshold from impostor scores
(the smallest one that lets at most ``floor(far * n)`` of ``n`` impostors through; ties at the
threshold are rejected, so the measured FAR never exceeds the target); :func:`operating_point`
reports TAR, the measured FAR and the counts behind them. A FAR that the impostor count cannot
measure (``n * far < 1``) is refused, never printed.

:func:`cross_identity_scores` scores every probe against every gallery entry, so the impostors
are all cross-identity pairs (on LFW millions, against the 3,000 of ``pairs.txt``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .verification import far_supported


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(s).all():
        raise ValueError(f"{name} scores hold NaN or Inf")
    return s


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The threshold (``accept = score > threshold``) at which at most ``floor(far * n)`` of the
    ``n`` impostor scores are accepted. Refuses a ``far`` outside ``(0, 1)`` or one ``n``
    impostors cannot measure (at least one false accept must be allowed)."""
    imp = _scores(impostor_scores, "impostor")
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    if len(imp) == 0:
        raise ValueError("no impostor scores: a threshold for a false accept rate needs impostor pairs")
    if not far_supported(len(imp), far):
        raise ValueError(
            f"{len(imp):,} impostor scores cannot measure FAR {far:g} (need at least {int(np.ceil(1 / far)):,}): "
            "enrol more people or use a larger FAR"
        )
    k = int(np.floor(far * len(imp)))  # impostors allowed above the threshold
    desc = np.sort(imp)[::-1]
    return float(desc[k])  # the (k+1)-th highest impostor is rejected, and every tie with it


@dataclass(frozen=True)
class OperatingPoint:
    """TAR at a threshold, with what it rests on. ``far_target`` is None when the threshold was
    given rather than fitted."""

    threshold: float
    tar: float
    far: float
    far_target: float | None
    genuine: int
    impostors: int

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def operating_point(
    genuine_scores: np.ndarray,
    impostor_scores: np.ndarray,
    far: float | None = None,
    *,
    threshold: float | None = None,
) -> OperatingPoint:
    """TAR and measured FAR at ``threshold``, or at the threshold fitted on these impostors for
    ``far`` (exactly one of the two). A fixed threshold is what a running system has: fitted on
    its clean templates, then applied to a protected gallery."""
    gen = _scores(genuine_scores, "genuine")
    imp = _scores(impostor_scores, "impostor")
    if (far is None) == (threshold is None):
        raise ValueError("give far= (fit the threshold on these impostors) or threshold= (a fixed one), not both")
    if len(gen) == 0 or len(imp) == 0:
        raise ValueError("an operating point needs genuine and impostor scores")
    thr = threshold_at_far(imp, far) if far is not None else float(threshold)
    return OperatingPoint(
        threshold=thr,
        tar=float((gen > thr).mean()),
        far=float((imp > thr).mean()),
        far_target=far,
        genuine=len(gen),
        impostors=len(imp),
    )


def cross_identity_scores(
    probes: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of every probe ``(P, D)`` against every gallery template ``(G, D)``:
    ``(genuine, impostor)``, genuine where the labels agree, impostor for every other pair."""
    p = np.asarray(probes, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    if p.ndim != 2 or g.ndim != 2 or p.shape[1] != g.shape[1]:
        raise ValueError(f"probes and gallery must be (P, D) and (G, D), got {p.shape} and {g.shape}")
    pn, gn = np.linalg.norm(p, axis=1), np.linalg.norm(g, axis=1)
    if (pn == 0).any() or (gn == 0).any():
        raise ValueError("a zero template has no cosine similarity")
    s = (p / pn[:, None]) @ (g / gn[:, None]).T
    same = np.asarray(probe_labels)[:, None] == np.asarray(gallery_labels)[None, :]
    return s[same], s[~same]


def protected_gallery_operating_points(
    protected: np.ndarray,
    clean: np.ndarray,
    probes: np.ndarray,
    same: np.ndarray,
    valid: np.ndarray | None = None,
    fars: tuple[float, ...] = (1e-3, 1e-4),
    protected_probes: np.ndarray | None = None,
) -> dict[str, object]:
    """What a running system sees when its gallery is protected: probes ``(P, D)`` scored against
    the protected gallery ``(G, D)``, at the threshold fitted on the *clean* gallery ``(G, D)``
    (what it runs unless re-tuned) and at one re-fitted on the protected gallery's impostors.

    ``same (G, P)`` says which gallery-probe pairs show one person (genuine; every other pair is
    an impostor); ``valid (G, P)`` excludes pairs (e.g. a capture against itself);
    ``protected_probes (P, D)``: the probes as the matcher compares them with the protected gallery
    (rotated with the key where the gallery is; default ``probes``). Per FAR that
    the impostors can measure: ``{"clean_threshold", "tar_clean" (unprotected TAR), "at_clean_threshold":
    {tar, far}, "refit": {threshold, tar, far}}``; an unmeasurable FAR maps to None."""

    def scores(g: np.ndarray, p: np.ndarray) -> np.ndarray:
        g = np.asarray(g, dtype=np.float32)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        p = np.asarray(p, dtype=np.float32)
        return g @ (p / np.linalg.norm(p, axis=1, keepdims=True)).T

    same = np.asarray(same, dtype=bool)
    valid = np.ones_like(same) if valid is None else np.asarray(valid, dtype=bool)
    gen_mask, imp_mask = same & valid, ~same & valid
    s_clean = scores(clean, probes)
    s_prot = scores(protected, probes if protected_probes is None else protected_probes)
    gen_c, imp_c = s_clean[gen_mask], s_clean[imp_mask]
    gen_p, imp_p = s_prot[gen_mask], s_prot[imp_mask]
    out: dict[str, object] = {"genuine": int(gen_mask.sum()), "impostors": int(imp_mask.sum())}
    for far in fars:
        if not far_supported(len(imp_c), far):
            out[f"{far:g}"] = None
            continue
        base = operating_point(gen_c, imp_c, far)
        fixed = operating_point(gen_p, imp_p, threshold=base.threshold)
        refit = operating_point(gen_p, imp_p, far)
        out[f"{far:g}"] = {
            "clean_threshold": base.threshold,
            "tar_clean": base.tar,
            "at_clean_threshold": {"tar": fixed.tar, "far": fixed.far},
            "refit": {"threshold": refit.threshold, "tar": refit.tar, "far": refit.far},
        }
    return out
