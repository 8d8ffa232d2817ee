"""What protection costs and what it buys, on the synthetic-face world with the default models.

Enrolled people are held-out identities (300000+, never seen by any model): template = E(image 0),
fresh probe = E(image 1). Attackers of other architectures are trained on the attacker's own
identities (200000+), on clean templates (*non-adaptive*) or on AdvFace-protected templates of
their own faces (*adaptive*: they know the defence). For each method (unprotected, AdvFace from
each start point, uniform noise in the same L-inf ball, Gaussian noise of AdvFace's L2 norm, the
Laplace mechanism) the harness reports:

- utility: 10-fold verification accuracy (protected template vs fresh probe, the deployed case;
  and protected vs protected), TAR at FAR 1e-3 and rank-1 identification over the whole gallery;
- privacy, per attacker: identity inference rate (the reconstruction, re-encoded, matches the
  person's fresh probe at the system's threshold, fitted on unprotected templates), rank-1
  identification of reconstructions, and SSIM / PSNR against the enrolled face.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import pair_distances, psnr, ssim_skimage, tar_at_far, verification_accuracy
from ..models.defaults import load_default
from ..protector import protect
from ..settings import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_STEPS, default_eps
from .attackers import make_attacker
from .baselines import laplace_dp, laplace_sensitivity, uniform_linf
from .config import config_from_json
from .methods import TemplateMethod
from .model_cache import cached_decoder
from .synthetic_world import SyntheticWorld
from .template_methods import AdvFace, GaussianSameL2, LaplaceDP, UniformNoise, Unprotected


@dataclass
class EvalConfig:
    """Settings of an evaluation run (all have defaults; JSON config files override any of them)."""

    users: int = 500
    attacker_ids: int = 1000
    attacker_per_id: int = 8
    attacker_epochs: int = 10
    attackers: list[str] = field(default_factory=lambda: ["shipped_conv", "mlp_wide", "mlp_deep", "resup"])
    adaptive_attacker: str = "mlp_wide"
    note: str = ""
    eps: float | None = None  # None: the package default for the encoder's dimension (settings.default_eps)
    alpha_ratio: float = DEFAULT_ALPHA / DEFAULT_EPS
    steps: int = DEFAULT_STEPS
    starts: list[str] = field(default_factory=lambda: ["random", "shadow"])
    # further GEMM precisions of the loop, each evaluated at the first start mode next to fp32
    precisions: list[str] = field(default_factory=lambda: ["bf16"])
    sweep_eps: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.04, 0.08, 0.12])
    laplace_epsilons: list[float] = field(default_factory=lambda: [20.0, 50.0, 200.0])
    # at the main eps and the first start mode: how steps and the step size matter
    sweep_steps: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    sweep_alpha_ratio: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4])
    seed: int = 0

    @classmethod
    def from_json(cls, path: str | Path | None) -> EvalConfig:
        return config_from_json(cls, path)


class _World(SyntheticWorld):
    """The synthetic world of :class:`EvalConfig`, with the protection the harness runs."""

    def __init__(self, cfg: EvalConfig) -> None:
        super().__init__(cfg.users, cfg.attacker_ids, cfg.attacker_per_id, cfg.seed)

    def protect(
        self, z: torch.Tensor, eps: float, start: str, cfg: EvalConfig, row_offset: int = 0, precision: str = "fp32"
    ) -> torch.Tensor:
        return protect(
            z,
            self.models.shadow,
            self.encoder,
            eps=eps,
            alpha=eps * cfg.alpha_ratio,
            steps=cfg.steps,
            start=start,
            seed=cfg.seed,
            row_ids=torch.arange(row_offset, row_offset + len(z)),
            precision=precision,
            progress=False,
        )


def utility(
    w: _World, gallery: torch.Tensor, probes: torch.Tensor, clean_threshold: float | None = None
) -> dict[str, float]:
    """Verification and identification of ``probes`` against the (protected) ``gallery``; with
    ``clean_threshold`` (squared L2 distance fitted for FAR 1e-3 on the unprotected gallery, what a
    running system keeps), also TAR at that threshold and the FAR it gives."""
    acc, std, _ = verification_accuracy(pair_distances(gallery[w.pi], probes[w.pj]), w.same)
    d = torch.cdist(torch.nn.functional.normalize(gallery, dim=1), torch.nn.functional.normalize(probes, dim=1)) ** 2
    n = len(d)
    genuine = torch.eye(n, dtype=torch.bool)
    dist = torch.cat([d[genuine], d[~genuine]]).numpy()
    same = np.concatenate([np.ones(n, bool), np.zeros(n * n - n, bool)])
    out = {
        "acc": 100 * acc,
        "acc_std": 100 * std,
        "tar_at_far_1e-3": 100 * tar_at_far(dist, same, 1e-3),  # all n (n - 1) cross pairs as impostors
        "impostor_pairs": n * n - n,
        "rank1": 100 * float((d.argmin(0) == torch.arange(n)).float().mean()),
    }
    if clean_threshold is not None:
        out["tar_at_clean_threshold"] = 100 * float((dist[same] < clean_threshold).mean())
        out["far_at_clean_threshold"] = float((dist[~same] < clean_threshold).mean())
    return out


def clean_threshold(w: _World, far: float = 1e-3) -> float:
    """The squared-L2 threshold a running system has: at most ``far`` of the unprotected gallery's
    n (n - 1) impostor pairs fall below it (accept = distance < threshold)."""
    from ..metrics.operating_point import threshold_at_far

    d = torch.cdist(_unit_rows(w.z_enrol), _unit_rows(w.z_probe)) ** 2
    off = ~torch.eye(len(d), dtype=torch.bool)
    # distances turned into similarities (-d) so the threshold rule is the metrics' own
    return -threshold_at_far(-d[off].numpy().astype(np.float64), far)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def _mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine between the rows of ``a`` and ``b`` (N, D): how far protection moved the templates."""
    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=1).mean())


def attack(w: _World, attacker: torch.nn.Module, templates: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Reconstruct faces from ``templates`` and score them against the enrolled faces and probes."""
    with torch.no_grad():
        rec = torch.cat([attacker(templates[a : a + 512]) for a in range(0, len(templates), 512)])
    return score_reconstructions(w, rec), rec


def score_reconstructions(w: _World, rec: torch.Tensor) -> dict[str, float]:
    """Reconstructions ``rec`` of the enrolled faces, judged by E against the fresh probes at the
    system threshold (identity inference, rank-1) and compared with the faces (SSIM, PSNR)."""
    everyone = torch.arange(len(w.z_probe))
    inference, rank1 = w.inference_and_rank1(w.encoder, w.z_probe, w.threshold, rec, everyone)
    return {
        "identity_inference": inference,
        "rank1": rank1,
        "ssim": float(ssim_skimage(rec, w.x_enrol).mean()),
        "psnr": float(psnr(rec, w.x_enrol).mean()),
    }


def _trained_attacker(
    name: str,
    features: torch.Tensor,
    images: torch.Tensor,
    cfg: EvalConfig,
    cache: Path,
    tag: str,
    log: Callable[[str], None],
) -> torch.nn.Module:
    if name == "shipped_conv":
        return load_default().attacker
    path = cache / f"{tag}-{name}-{cfg.attacker_ids}x{cfg.attacker_per_id}-e{cfg.attacker_epochs}.safetensors"
    return cached_decoder(
        path,
        lambda: make_attacker(name, features.shape[1], tuple(images.shape[1:])),
        features,
        images,
        epochs=cfg.attacker_epochs,
        seed=cfg.seed + 7,
        label=f"attacker {tag}/{name}",
        log=log,
    )


def run_evaluation(cfg: EvalConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything, write ``report.md``, ``results.json``, ``frontier.png`` and ``grid.png`` to
    ``out_dir`` and return the results."""
    t0 = time.time()
    out = Path(out_dir)
    cache = out / "attackers"
    cache.mkdir(parents=True, exist_ok=True)
    w = _World(cfg)
    if cfg.eps is None:
        cfg = dataclasses.replace(cfg, eps=default_eps(w.z_enrol.shape[1]))
    log(f"world ready: {cfg.users} enrolled people, {len(w.x_att)} attacker images, threshold {w.threshold:.3f}")

    # ---- the methods at the main setting: each a TemplateMethod (template_methods.py)
    def advface(start: str, precision: str = "fp32", label: str | None = None) -> AdvFace:
        return AdvFace(
            lambda z, off: w.protect(z, cfg.eps, start, cfg, row_offset=off, precision=precision),
            label or f"AdvFace start={start}",
        )

    rows: list[TemplateMethod] = [Unprotected(), *(advface(s) for s in cfg.starts)]
    rows += [advface(cfg.starts[0], p, f"AdvFace start={cfg.starts[0]}, {p}") for p in cfg.precisions]
    rows += [UniformNoise(cfg.eps, cfg.seed), GaussianSameL2(rows[1], cfg.seed)]
    rows += [LaplaceDP(e, cfg.seed) for e in cfg.laplace_epsilons]
    methods: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    timing = {}
    for m in rows:
        t = time.time()
        g = m.apply(w.z_enrol, 0)
        if isinstance(m, AdvFace):
            timing[m.label.replace("AdvFace start=", "advface-").replace(", ", "-")] = len(g) / (time.time() - t)
        methods[m.label] = (g, m.apply(w.z_probe, 1))
    ref = methods[rows[1].label]
    precision_effect = {}
    for prec in cfg.precisions:
        g = methods[f"AdvFace start={cfg.starts[0]}, {prec}"][0]
        # a different sign somewhere moves an element by ~alpha: count elements off by > alpha / 4
        off = (g - ref[0]).abs() > cfg.eps * cfg.alpha_ratio / 4
        precision_effect[prec] = {
            "elements_differing_from_fp32": float(off.float().mean()),
            "rows_differing_from_fp32": float(off.any(dim=1).float().mean()),
            "mean_cosine_to_fp32": float(torch.nn.functional.cosine_similarity(g, ref[0], dim=1).mean()),
        }

    util = {}
    system_threshold = clean_threshold(w)
    for name, (gal, prb) in methods.items():
        util[name] = {
            "vs_fresh": utility(w, gal, w.z_probe, system_threshold),
            "vs_protected": utility(w, gal, prb),
            "mean_cosine_to_clean": _mean_cosine(gal, w.z_enrol),
        }
    log("utility done")

    # ---- attackers: non-adaptive (clean training templates) ...
    attackers = {a: _trained_attacker(a, w.z_att, w.x_att, cfg, cache, "clean", log) for a in cfg.attackers}
    privacy: dict[str, dict[str, dict[str, float]]] = {}
    recs: dict[str, torch.Tensor] = {}
    for name, (gal, _) in methods.items():
        privacy[name] = {}
        for a, model in attackers.items():
            privacy[name][a], rec = attack(w, model, gal)
            if a == cfg.attackers[0]:
                recs[name] = rec
    # ... and adaptive (trained on AdvFace-protected templates of the attacker's own faces)
    for start in cfg.starts:
        z_prot = advface(start).apply(w.z_att, 2)
        model = _trained_attacker(
            cfg.adaptive_attacker, z_prot, w.x_att, cfg, cache, f"adaptive-{start}-eps{cfg.eps:g}", log
        )
        name = f"AdvFace start={start}"
        privacy[name][f"adaptive {cfg.adaptive_attacker}"], _ = attack(w, model, methods[name][0])
    log("attacks done")

    # ---- sweep for the privacy-utility frontier
    sweep = []

    def point(method: str, param: float, g: torch.Tensor) -> None:
        inf = np.mean([attack(w, m, g)[0]["identity_inference"] for m in attackers.values()])
        acc = utility(w, g, w.z_probe)["acc"]
        sweep.append(
            {
                "method": method,
                "param": param,
                "acc": acc,
                "identity_inference": float(inf),
                "mean_cosine_to_clean": _mean_cosine(g, w.z_enrol),
            }
        )

    for start in cfg.starts:
        for e in cfg.sweep_eps:
            point(f"AdvFace start={start}", e, w.protect(w.z_enrol, e, start, cfg))
    for key, label, values in (
        ("steps", "steps", cfg.sweep_steps),
        ("alpha_ratio", "alpha/eps", cfg.sweep_alpha_ratio),
    ):
        for v in values:
            g = w.protect(w.z_enrol, cfg.eps, cfg.starts[0], dataclasses.replace(cfg, **{key: v}))
            point(f"AdvFace start={cfg.starts[0]}, eps {cfg.eps:g}, {label}", v, g)
    for e in cfg.sweep_eps:
        point("uniform noise", e, uniform_linf(w.z_enrol, e, cfg.seed))
    for e in cfg.laplace_epsilons:
        point("Laplace DP", e, laplace_dp(w.z_enrol, e, cfg.seed))
    log("sweep done")

    results = {
        "config": asdict(cfg),
        "dim": int(w.z_enrol.shape[1]),
        "threshold": w.threshold,
        "utility": util,
        "privacy": privacy,
        "sweep": sweep,
        "protect_templates_per_s": timing,
        "precision_effect": precision_effect,
        "laplace_sensitivity_l1": laplace_sensitivity(w.z_enrol.shape[1]),
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from .report import write_report

    written = write_report(results, w.x_enrol, recs, out)
    log(f"wrote {out}: results.json, {', '.join(written)} in {time.time() - t0:.0f} s")
    return results
