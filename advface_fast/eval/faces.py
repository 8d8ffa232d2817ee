"""AdvFace on real photographs: the paper's LFW protocol with a real encoder, or any labelled data.

The system: a real face recognition model ``E`` (default SFace, 128-d) stores ``z = E(x)`` of the
enrolled face. The protocol's pairs decide what is enrolled: the first image of each pair is the
stored template (protected by each method), the second the fresh probe captured at verification.

- utility: 10-fold verification accuracy (the protocol's folds; threshold chosen on 9, scored on
  the 10th), TAR at FAR 1e-3 where the impostor pairs support it (the report states how many),
  for protected templates against fresh probes;
- privacy: decoders trained by the attacker on *other* faces (the training set, disjoint from the
  evaluated images) reconstruct the enrolled face from the stored template. Identity inference =
  the reconstruction is accepted as the person against the pair's probe, judged by ``E`` at the
  system threshold and by an independent recogniser ``E2`` (dlib's ResNet, used by no defender
  or attacker) at its own threshold fitted on clean pairs; rank-1 of the reconstruction among the
  scored probes; SSIM (scikit-image) / PSNR against the enrolled aligned face.

The defender's shadow decoder is an ``MLPDecoder`` (the fused engines apply) trained on the same
training faces as the attackers; the attackers are other architectures (they know the training
distribution, not the shadow decoder). Every stage is cached under ``cache_dir`` (aligned faces,
embeddings, trained models, reconstructions' embeddings), so a rerun costs minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import far_supported, pair_distances, psnr, ssim_skimage, tar_at_far, verification_accuracy
from ..metrics.operating_point import protected_gallery_operating_points
from ..protector import protect
from .baselines import laplace_dp, laplace_sensitivity, uniform_linf
from .faces_config import PAPER_LFW, FacesEvalConfig
from .faces_data import FacesData
from .faces_models import identity_shadow, prepare

ID_SHADOW = "identity-trained shadow"  # the label of the rows with the shadow decoder of identity_shadow

__all__ = ["PAPER_LFW", "FacesData", "FacesEvalConfig", "attack_scores", "prepare", "run_faces_evaluation", "utility"]


def _embed_recs(encoder, rec: torch.Tensor, cache: Path, progress: bool, desc: str) -> torch.Tensor:
    from ..faces.embed import embed_faces

    return embed_faces(encoder, rec.contiguous(), cache_dir=cache, progress=progress, desc=desc)


def attack_scores(
    data: FacesData, attacker: torch.nn.Module, templates: torch.Tensor, progress: bool, label: str
) -> tuple[dict[str, float], torch.Tensor]:
    """Reconstruct the privacy pairs' enrolled faces from their stored ``templates`` (rows of the
    test files) and score the reconstructions (see the module docstring)."""
    p = data.protocol
    first, second = p.first[data.priv], p.second[data.priv]
    with torch.no_grad():
        rec = torch.cat([attacker(templates[first[a : a + 256]]) for a in range(0, len(first), 256)]).float()
    e = _embed_recs(data.encoder, rec, data.cache, progress, f"E({label})")
    d = pair_distances(e, data.z_test[second])
    full = torch.cdist(
        torch.nn.functional.normalize(e, dim=1), torch.nn.functional.normalize(data.z_test[second], dim=1)
    )
    names = np.array(p.person)
    other = torch.from_numpy(names[first][:, None] != names[second][None, :])  # pairs of two people

    def wrong_person(dist: torch.Tensor, thr: float, mask: torch.Tensor) -> float:
        """% of (reconstruction, another person's probe) comparisons accepted: the floor to read
        identity inference against (a blurry average face matches many people)."""
        return 100 * float((dist[mask] ** 2 < thr).float().mean())

    res = {
        "identity_inference_E": 100 * float((d < data.threshold).mean()),
        "wrong_person_E": wrong_person(full, data.threshold, other),
        "rank1_E": 100 * float((full.argmin(1) == torch.arange(len(e))).float().mean()),
        "ssim": float(ssim_skimage(rec, data.x_test[first]).mean()),
        "psnr": float(psnr(rec, data.x_test[first]).mean()),
        "pairs": len(first),
    }
    if data.judge is not None:
        sel = np.isin(data.priv, data.judged)
        e2 = _embed_recs(data.judge, rec[torch.from_numpy(sel)], data.cache, progress, f"E2({label})")
        d2 = pair_distances(e2, data.e2_test[second[sel]])
        res["identity_inference_E2"] = 100 * float((d2 < data.e2_threshold).mean())
        full2 = torch.cdist(e2, torch.nn.functional.normalize(data.e2_test[second[sel]], dim=1))
        res["wrong_person_E2"] = wrong_person(full2, data.e2_threshold, other[sel][:, sel])
        res["judged_pairs"] = int(sel.sum())
    return res, rec


def _operating_sets(data: FacesData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(gallery rows, probe rows, same person (G, P), valid (G, P))`` of the protocol's files:
    every enrolled file against every probe file, a capture never against itself (cached on ``data``)."""
    cached = getattr(data, "_operating_sets", None)
    if cached is None:
        p = data.protocol
        g, q = np.unique(p.first), np.unique(p.second)
        person = np.asarray(p.person)
        cached = (g, q, person[g][:, None] == person[q][None, :], g[:, None] != q[None, :])
        data._operating_sets = cached
    return cached


def utility(data: FacesData, templates: torch.Tensor) -> dict[str, Any]:
    """Verification of protected enrolled templates (rows of the test files) against clean probes:
    best-threshold accuracy on the protocol's pairs (the paper's comparison), and the operating
    point of a deployed system, TAR at FAR 1e-3 and 1e-4 at the threshold fitted on the clean
    gallery and at one re-fitted on the protected gallery, with every cross-identity pair of
    enrolled and probe files as an impostor (``operating_point``)."""
    p = data.protocol
    d = pair_distances(templates[p.first], data.z_test[p.second])
    acc, std, _ = verification_accuracy(d, p.same, folds=p.fold)
    g, q, same, valid = _operating_sets(data)
    op = protected_gallery_operating_points(
        templates[g].numpy(), data.z_test[g].numpy(), data.z_test[q].numpy(), same, valid
    )
    return {
        "operating_point": op,
        "acc": 100 * acc,
        "acc_std": 100 * std,
        # None where the impostor pairs cannot measure FAR 1e-3 (fewer than 1,000)
        "tar_at_far_1e-3": 100 * tar_at_far(d, p.same, 1e-3) if far_supported(int((~p.same).sum()), 1e-3) else None,
        "impostor_pairs": int((~p.same).sum()),
        "mean_cosine_to_clean": float(
            torch.nn.functional.cosine_similarity(templates[data.enrolled], data.z_test[data.enrolled]).mean()
        ),
    }


def run_faces_evaluation(
    cfg: FacesEvalConfig,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the real-faces evaluation; write ``report.md``, ``results.json``, ``frontier.png`` and
    ``grid.png`` to ``out_dir`` and return the results. ``command``: the command line that ran it,
    stated in the report so that it can be reproduced (the CLI passes it)."""
    t0 = time.time()
    out = Path(out_dir)
    data, shadow, attackers = prepare(cfg, out, cache_dir, log, progress)
    dim = data.z_test.shape[1]
    cfg = cfg.for_dim(dim)

    z = data.z_test
    rows = torch.from_numpy(data.enrolled)
    alpha = cfg.eps * cfg.alpha_ratio

    def advface(start: str, eps: float, images: torch.Tensor | None = None, decoder=shadow) -> torch.Tensor:
        out_z = z.clone()
        out_z[rows] = protect(
            z[rows],
            decoder,
            data.encoder,
            eps=eps,
            alpha=eps * cfg.alpha_ratio,
            steps=cfg.steps,
            start=start,
            images=images,
            seed=cfg.seed,
            row_ids=rows,
            progress=False,
        )
        return out_z

    def noise(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        out_z = z.clone()
        out_z[rows] = fn(z[rows])
        return out_z

    timing: dict[str, float] = {}
    methods: dict[str, torch.Tensor] = {"Unprotected": z}
    methods[f"Random noise (uniform, L-inf {cfg.eps:g})"] = noise(lambda v: uniform_linf(v, cfg.eps, cfg.seed))
    methods[f"DP (Laplace, epsilon {cfg.laplace_epsilon:g})"] = noise(
        lambda v: laplace_dp(v, cfg.laplace_epsilon, cfg.seed)
    )
    advface_rows = [
        ("AdvFace online (start=original, x known)", "original", data.x_test[rows], shadow),
        ("AdvFace offline (start=shadow, eq. 3)", "shadow", None, shadow),
        ("AdvFace, package default (start=random)", "random", None, shadow),
    ]
    if cfg.shadow_identity_steps > 0:
        id_shadow = identity_shadow(shadow, data, cfg, log, progress)
        advface_rows += [
            (f"AdvFace offline, {ID_SHADOW} (start=shadow)", "shadow", None, id_shadow),
            (f"AdvFace, {ID_SHADOW} (start=random)", "random", None, id_shadow),
        ]
    for label, start, imgs, decoder in advface_rows:
        t = time.time()
        methods[label] = advface(start, cfg.eps, imgs, decoder)
        timing[label] = len(rows) / (time.time() - t)
        log(f"{label}: {timing[label]:.0f} templates/s")

    util = {m: utility(data, g) for m, g in methods.items()}
    privacy: dict[str, dict[str, dict[str, float]]] = {}
    recs: dict[str, torch.Tensor] = {}
    for m, g in methods.items():
        privacy[m] = {}
        for a, model in attackers.items():
            privacy[m][a], rec = attack_scores(data, model, g, progress, f"{a}|{m}")
            if a == next(iter(attackers)):
                recs[m] = rec
        log(
            f"{m}: acc {util[m]['acc']:.2f}; identity inference (E) "
            + ", ".join(f"{a} {privacy[m][a]['identity_inference_E']:.1f}" for a in attackers)
        )

    # the frontier: accuracy against identity inference of the strongest attacker on clean templates
    strongest = max(attackers, key=lambda a: privacy["Unprotected"][a]["identity_inference_E"])
    sweep = []

    def point(method: str, param: float, g: torch.Tensor) -> None:
        r, _ = attack_scores(data, attackers[strongest], g, progress, f"{strongest}|sweep-{method}-{param}")
        sweep.append(
            {
                "method": method,
                "param": param,
                "attacker": strongest,
                "acc": utility(data, g)["acc"],
                "identity_inference_E": r["identity_inference_E"],
                "identity_inference_E2": r.get("identity_inference_E2"),
            }
        )

    default_label = "AdvFace, package default (start=random)"
    for e in cfg.sweep_eps:
        point("AdvFace start=random", e, methods[default_label] if e == cfg.eps else advface("random", e))
    for e in cfg.sweep_eps:
        point("uniform noise", e, noise(lambda v, e=e: uniform_linf(v, e, cfg.seed)))
    for e in cfg.sweep_laplace:
        point("Laplace DP", e, noise(lambda v, e=e: laplace_dp(v, e, cfg.seed)))
    log("sweep done")

    results = {
        "config": asdict(cfg),
        "encoder": data.encoder.fingerprint(),
        "judge": data.judge.fingerprint() if data.judge is not None else None,
        "alignment": {"test": data.test_counts, "train": data.train_counts},
        "train_test_identical_crops": data.train_test_duplicates,
        "n_pairs": len(data.protocol.first),
        "n_folds": data.protocol.n_folds,
        "n_enrolled_templates": len(rows),
        "threshold_E": data.threshold,
        "threshold_E2": data.e2_threshold,
        "clean_accuracy_E2": getattr(data, "e2_clean_acc", None),
        "utility": util,
        "privacy": privacy,
        "sweep": sweep,
        "sweep_attacker": strongest,
        "protect_templates_per_s": timing,
        "laplace_sensitivity_l1": laplace_sensitivity(dim),
        "alpha": alpha,
        "paper_lfw": PAPER_LFW,
        "command": command,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from .faces_report import write_faces_report

    written = write_faces_report(results, data.x_test[data.protocol.first[data.priv]], recs, out)
    log(f"wrote {out}: results.json, {', '.join(written)} in {time.time() - t0:.0f} s")
    return results
