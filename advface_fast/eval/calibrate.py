"""Choosing eps on the user's own encoder and data.

:func:`recommend_eps` takes measured points and returns the largest eps whose loss against
unprotected templates stays within ``max_loss`` percentage points: of TAR at FAR 1e-3 (the
threshold re-fitted for the protected gallery, every cross-identity pair an impostor) where the
protocol's impostors can measure it, else of best-threshold accuracy; :func:`run_calibration`
measures those points on a real-faces
protocol (the same data, caches, shadow decoder and attackers as ``eval-faces``), with the
attack rates at each eps, so the choice is made knowing what it buys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..protector import protect
from .faces import FacesEvalConfig, attack_scores, prepare, utility


def recommend_eps(
    points: Sequence[dict[str, float]], base_acc: float, max_loss: float = 0.5, metric: str = "acc"
) -> dict[str, Any]:
    """The largest ``eps`` among ``points`` (dicts with ``eps`` and ``metric`` in %, by default
    ``acc``) whose loss ``base_acc - point[metric]`` is at most ``max_loss`` points. Returns
    ``{"eps": value or None, "reason": text}``; ``None`` when even the smallest eps swept loses more."""
    if max_loss < 0:
        raise ValueError(f"max_loss must be >= 0, got {max_loss}")
    what = METRIC_NAMES.get(metric, metric)
    ok = [p for p in points if base_acc - p[metric] <= max_loss]
    if not ok:
        smallest = min(points, key=lambda p: p["eps"])
        return {
            "eps": None,
            "reason": f"every swept eps loses more than {max_loss} points of {what} (eps {smallest['eps']:g}: "
            f"{base_acc - smallest[metric]:.2f}); sweep smaller values",
        }
    best = max(ok, key=lambda p: p["eps"])
    return {
        "eps": best["eps"],
        "reason": f"largest swept eps with a loss of {what} <= {max_loss} points "
        f"({base_acc:.2f}% -> {best[metric]:.2f}%)",
    }


METRIC_NAMES = {
    "acc": "best-threshold verification accuracy",
    "tar": "TAR at FAR 1e-3 (threshold re-fitted for the protected gallery)",
}


def _tar(u: dict[str, Any]) -> float | None:
    """TAR at FAR 1e-3 (%) at the threshold re-fitted for the gallery, when measurable."""
    op = (u.get("operating_point") or {}).get("0.001")
    return 100 * op["refit"]["tar"] if op else None


def run_calibration(
    cfg: FacesEvalConfig,
    eps_grid: Sequence[float],
    out_dir: str | Path,
    *,
    max_loss: float = 1.0,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Sweep AdvFace (package default start) over ``eps_grid`` on ``cfg``'s protocol; write
    ``calibration.json`` to ``out_dir`` and return it with the recommendation (and ``command``, the
    command line that ran it, when the CLI passes it)."""
    t0 = time.time()
    out = Path(out_dir)
    data, shadow, attackers = prepare(cfg, out, cache_dir, log, progress)
    dim = data.z_test.shape[1]
    rows = torch.from_numpy(data.enrolled)
    clean = utility(data, data.z_test)
    base, base_tar = clean["acc"], _tar(clean)
    points = []
    for eps in sorted(eps_grid):
        g = data.z_test.clone()
        g[rows] = protect(
            data.z_test[rows], shadow, data.encoder, eps=eps, alpha=eps * cfg.alpha_ratio, steps=cfg.steps,
            seed=cfg.seed, row_ids=rows, progress=False,
        )  # fmt: skip
        u = utility(data, g)
        att = {a: attack_scores(data, m, g, progress, f"{a}|calibrate-{eps}")[0] for a, m in attackers.items()}
        op = (u.get("operating_point") or {}).get("0.001")
        points.append(
            {
                "eps": eps,
                "acc": u["acc"],
                "tar": _tar(u),
                "tar_at_clean_threshold": 100 * op["at_clean_threshold"]["tar"] if op else None,
                "mean_cosine_to_clean": u["mean_cosine_to_clean"],
                "attacks": att,
            }
        )
        tar = f", TAR@FAR 1e-3 {_tar(u):.2f}% (unprotected {base_tar:.2f}%)" if op and base_tar is not None else ""
        log(
            f"eps {eps:g}: accuracy {u['acc']:.2f}% (unprotected {base:.2f}%){tar}, identity inference (E) "
            + ", ".join(f"{a} {r['identity_inference_E']:.1f}%" for a, r in att.items())
        )
    # at the operating point where the impostors can measure FAR 1e-3; best-threshold accuracy otherwise
    by_tar = base_tar is not None and all(p["tar"] is not None for p in points)
    rec = recommend_eps(points, base_tar if by_tar else base, max_loss, "tar" if by_tar else "acc")
    result = {
        "config": {
            "max_loss": max_loss,
            "eps_grid": list(eps_grid),
            **{k: getattr(cfg, k) for k in ("steps", "alpha_ratio")},
        },
        "dim": dim,
        "unprotected_acc": base,
        "unprotected_tar_at_far_1e-3": base_tar,
        "recommended_by": METRIC_NAMES["tar" if by_tar else "acc"],
        "points": points,
        "recommendation": rec,
        "command": command,
        "seconds": time.time() - t0,
    }
    (out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"recommended eps: {rec['eps']} ({rec['reason']})")
    return result
