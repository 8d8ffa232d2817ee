"""Choosing eps on the user's own encoder and data.

:func:`recommend_eps` takes measured points ``(eps, verification accuracy)`` and returns the
largest eps whose accuracy loss against unprotected templates stays within ``max_loss``
percentage points (default 0.5); :func:`run_calibration` measures those points on a real-faces
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


def recommend_eps(points: Sequence[dict[str, float]], base_acc: float, max_loss: float = 0.5) -> dict[str, Any]:
    """The largest ``eps`` among ``points`` (dicts with ``eps`` and ``acc`` in %) whose loss
    ``base_acc - acc`` is at most ``max_loss`` points. Returns ``{"eps": value or None, "reason":
    text}``; ``None`` when even the smallest eps swept loses more."""
    if max_loss < 0:
        raise ValueError(f"max_loss must be >= 0, got {max_loss}")
    ok = [p for p in points if base_acc - p["acc"] <= max_loss]
    if not ok:
        smallest = min(points, key=lambda p: p["eps"])
        return {
            "eps": None,
            "reason": f"every swept eps loses more than {max_loss} points (eps {smallest['eps']:g}: "
            f"{base_acc - smallest['acc']:.2f}); sweep smaller values",
        }
    best = max(ok, key=lambda p: p["eps"])
    return {
        "eps": best["eps"],
        "reason": f"largest swept eps with a verification loss <= {max_loss} points "
        f"({base_acc:.2f}% -> {best['acc']:.2f}%)",
    }


def run_calibration(
    cfg: FacesEvalConfig,
    eps_grid: Sequence[float],
    out_dir: str | Path,
    *,
    max_loss: float = 0.5,
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
    base = utility(data, data.z_test)["acc"]
    points = []
    for eps in sorted(eps_grid):
        g = data.z_test.clone()
        g[rows] = protect(
            data.z_test[rows], shadow, data.encoder, eps=eps, alpha=eps * cfg.alpha_ratio, steps=cfg.steps,
            seed=cfg.seed, row_ids=rows, progress=False,
        )  # fmt: skip
        u = utility(data, g)
        att = {a: attack_scores(data, m, g, progress, f"{a}|calibrate-{eps}")[0] for a, m in attackers.items()}
        points.append({"eps": eps, "acc": u["acc"], "mean_cosine_to_clean": u["mean_cosine_to_clean"], "attacks": att})
        log(
            f"eps {eps:g}: accuracy {u['acc']:.2f}% (unprotected {base:.2f}%), identity inference (E) "
            + ", ".join(f"{a} {r['identity_inference_E']:.1f}%" for a, r in att.items())
        )
    rec = recommend_eps(points, base, max_loss)
    result = {
        "config": {
            "max_loss": max_loss,
            "eps_grid": list(eps_grid),
            **{k: getattr(cfg, k) for k in ("steps", "alpha_ratio")},
        },
        "dim": dim,
        "unprotected_acc": base,
        "points": points,
        "recommendation": rec,
        "command": command,
        "seconds": time.time() - t0,
    }
    (out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"recommended eps: {rec['eps']} ({rec['reason']})")
    return result
