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

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..decoders import MLPDecoder
from ..metrics import far_supported, pair_distances, psnr, ssim_skimage, tar_at_far, verification_accuracy
from ..protector import protect
from ..serialization import KEY_ENCODER, load_model, save_model
from ..settings import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_STEPS
from ..train import fit_decoder
from .attackers import make_attacker
from .baselines import laplace_dp, laplace_sensitivity, uniform_linf
from .config import config_from_json

# the paper's LFW figures (Table 1 / Table 2 of AdvFace, CVPR 2023), for comparison only
PAPER_LFW = {
    "accuracy": {"unprotected": 98.13, "random": 97.07, "dp": 97.38, "online": 96.73, "offline": 98.05},
    "identity_inference": {"unprotected": 97.40, "random": 94.83, "dp": 94.00, "offline": 3.37},
}


@dataclass
class FacesEvalConfig:
    """Settings of a real-faces evaluation (JSON config files override any of them)."""

    # the evaluated protocol: an LFW-format pairs file, or a folder with one sub-folder per identity
    pairs: str | None = "../shared/data/lfw/pairs.txt"
    pairs_images: str | None = None  # LFW image root (default: lfw-deepfunneled beside pairs.txt)
    test_folder: str | None = None  # instead of pairs: identity folders, pairs drawn LFW-style
    # the faces the defender and the attackers train on (disjoint from the evaluated images)
    train_images: str = "../shared/data/celeba_subset/images"
    train_identity: str | None = "../shared/data/celeba_subset/identity.txt"  # None: identity folders
    encoder: str = "sface"  # "sface", or an .onnx / .safetensors path with its input contract
    detector: str = "yunet"  # "yunet" (five-point alignment) or "none" (the images are aligned already)
    judge: str = "dlib"  # "dlib" or "none"
    size: int = 64  # decoder output side (RGB); the encoder's contract resizes to its input
    shadow_hidden: list[int] = field(default_factory=lambda: [512, 1024])
    shadow_epochs: int = 30
    attackers: list[str] = field(default_factory=lambda: ["mlp_wide", "conv", "resup"])
    attacker_epochs: int = 30
    attacker_epochs_by_name: dict[str, int] = field(default_factory=dict)  # overrides, e.g. {"conv": 4}
    # an attacker with white-box E: this architecture's L1 decoder fine-tuned with an identity loss
    identity_attacker: str | None = "conv"
    identity_steps: int = 300
    eps: float = DEFAULT_EPS
    alpha_ratio: float = DEFAULT_ALPHA / DEFAULT_EPS
    steps: int = DEFAULT_STEPS
    laplace_epsilon: float = 200.0
    sweep_eps: list[float] = field(default_factory=lambda: [0.02, 0.04, 0.08, 0.12])
    sweep_laplace: list[float] = field(default_factory=lambda: [50.0, 200.0, 1000.0])
    privacy_per_fold: int = 100  # matched pairs per fold whose reconstructions E scores
    judge_per_fold: int = 30  # of those, how many E2 also scores (dlib: ~0.1 s a face)
    seed: int = 0
    note: str = ""

    @classmethod
    def from_json(cls, path: str | Path | None) -> FacesEvalConfig:
        return config_from_json(cls, path)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class _Data:
    """The protocol, the aligned faces and their embeddings, computed once (cached)."""

    def __init__(self, cfg: FacesEvalConfig, cache: Path, log: Callable[[str], None], progress: bool) -> None:
        from ..encoder_loader import as_encoder
        from ..faces.align import align_files
        from ..faces.datasets import read_identity_file, read_identity_folder, read_lfw_pairs
        from ..faces.embed import embed_faces, encoder_key, faces_to_tensor
        from ..faces.protocol import pairs_from_identities

        if cfg.test_folder:
            self.protocol = pairs_from_identities(read_identity_folder(cfg.test_folder), seed=cfg.seed)
            pick = "largest"
        elif cfg.pairs:
            self.protocol = read_lfw_pairs(cfg.pairs, cfg.pairs_images)
            pick = "center"
        else:
            raise ValueError("set pairs (an LFW-format pairs file) or test_folder (identity folders)")
        p = self.protocol
        test = align_files(
            p.files, cache_dir=cache, pick=pick, detector=cfg.detector, progress=progress, desc="aligning test faces"
        )
        self.test_counts = test.counts()
        log(f"test set: {len(p.files)} images, {len(p.first)} pairs, alignment {self.test_counts}")
        train_set = (
            read_identity_file(cfg.train_images, cfg.train_identity)
            if cfg.train_identity
            else read_identity_folder(cfg.train_images)
        )
        train = align_files(
            train_set.files,
            cache_dir=cache,
            pick="largest",
            detector=cfg.detector,
            progress=progress,
            desc="aligning training faces",
        )
        self.train_counts = train.counts()
        keep = train.ok()  # a training face the detector never found is dropped (and counted)
        train_faces = train.faces[keep]
        test_hashes = {hashlib.sha1(f.tobytes()).digest() for f in test.faces}
        self.train_test_duplicates = int(sum(hashlib.sha1(f.tobytes()).digest() in test_hashes for f in train_faces))
        log(
            f"training set: {len(train_set)} images of {len(train_set.names)} people, alignment "
            f"{self.train_counts}; {int((~keep).sum())} without a detected face dropped; "
            f"{self.train_test_duplicates} identical to an evaluated crop"
        )
        self.encoder = as_encoder(cfg.encoder)
        self.encoder_key = encoder_key(self.encoder)
        self.z_test = embed_faces(self.encoder, test.faces, cache_dir=cache, progress=progress, desc="E(test)")
        flipped = np.ascontiguousarray(train_faces[:, :, ::-1])
        self.z_train = torch.cat(
            [
                embed_faces(self.encoder, train_faces, cache_dir=cache, progress=progress, desc="E(train)"),
                embed_faces(self.encoder, flipped, cache_dir=cache, progress=progress, desc="E(train, flipped)"),
            ]
        )
        self.x_train = torch.cat([faces_to_tensor(train_faces, cfg.size), faces_to_tensor(flipped, cfg.size)])
        self.x_test = faces_to_tensor(test.faces, cfg.size)
        self.train_key = _key(len(train_faces), hashlib.sha256(train_faces.tobytes()).hexdigest())
        self.judge = None
        self.e2_test = None
        if cfg.judge == "dlib":
            from ..faces.dlib_encoder import DlibEncoder

            self.judge = DlibEncoder()
            self.e2_test = embed_faces(self.judge, test.faces, cache_dir=cache, progress=progress, desc="E2(test)")
        elif cfg.judge != "none":
            raise ValueError(f"judge must be 'dlib' or 'none', got {cfg.judge!r}")
        self.cache = cache

        # the system threshold, fitted on clean pairs (median of the ten folds' best thresholds)
        d = pair_distances(self.z_test[p.first], self.z_test[p.second])
        _, _, thr = verification_accuracy(d, p.same, folds=p.fold)
        self.threshold = float(np.median(thr))
        self.e2_threshold = None
        if self.e2_test is not None:
            d2 = pair_distances(self.e2_test[p.first], self.e2_test[p.second])
            acc2, _, thr2 = verification_accuracy(d2, p.same, folds=p.fold)
            self.e2_threshold, self.e2_clean_acc = float(np.median(thr2)), 100 * acc2
        # matched pairs scored for privacy: the first privacy_per_fold of each fold
        matched = np.flatnonzero(p.same)
        self.priv = np.concatenate([matched[p.fold[matched] == f][: cfg.privacy_per_fold] for f in range(p.n_folds)])
        self.judged = np.concatenate([matched[p.fold[matched] == f][: cfg.judge_per_fold] for f in range(p.n_folds)])
        self.enrolled = np.unique(p.first)  # test files stored as templates


def _train(
    name: str, make: Callable[[], torch.nn.Module], data: _Data, cfg: FacesEvalConfig, epochs: int, log, progress
) -> torch.nn.Module:
    key = _key(name, data.train_key, data.encoder_key, cfg.size, epochs, cfg.seed, cfg.shadow_hidden)
    path = data.cache / "models" / f"{name}-{key}.safetensors"
    if path.is_file():
        log(f"{name}: reusing {path}")
        return load_model(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    n_val = max(1, len(data.z_train) // 40)
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(data.z_train), generator=g)
    val, tr = perm[:n_val], perm[n_val:]
    model, hist = fit_decoder(
        data.z_train[tr],
        data.x_train[tr],
        make(),
        val=(data.z_train[val], data.x_train[val]),
        epochs=epochs,
        batch_size=128,
        seed=cfg.seed + 7,
        checkpoint=path.with_suffix(".ckpt"),
        progress=progress,
        log=lambda s: None,
    )
    save_model(model, path, metadata={KEY_ENCODER: data.encoder_key})
    path.with_suffix(".ckpt").unlink(missing_ok=True)
    last = hist[-1]
    log(
        f"{name}: trained in {time.time() - t:.0f} s; val L1 {last.get('val_l1', float('nan')):.3f}, "
        f"SSIM {last.get('val_ssim', float('nan')):.3f}"
    )
    return model


def differentiable(encoder: object):
    """``images -> unit features`` with autograd for an encoder: a TorchEncoder's own, or an ONNX
    model's graph in torch (:class:`~advface_fast.onnx_torch.OnnxTorchModule`)."""
    from ..encoders import OnnxEncoder, TorchEncoder
    from ..onnx_torch import OnnxTorchModule

    if isinstance(encoder, TorchEncoder):
        return encoder.features
    if isinstance(encoder, OnnxEncoder) and encoder.spec is not None:
        return TorchEncoder(OnnxTorchModule.from_file(encoder.path), spec=encoder.spec).features
    raise TypeError(f"no differentiable form of {type(encoder).__name__} for the identity-loss attacker")


def _attackers(data: _Data, cfg: FacesEvalConfig, log, progress) -> dict[str, torch.nn.Module]:
    """The attackers: L1 decoders of ``cfg.attackers`` and the identity-loss one (cached)."""
    import copy

    from ..train.identity import finetune_identity

    dim, shape = data.z_test.shape[1], (3, cfg.size, cfg.size)
    names = dict.fromkeys([*cfg.attackers, *([cfg.identity_attacker] if cfg.identity_attacker else [])])
    epochs = {a: cfg.attacker_epochs_by_name.get(a, cfg.attacker_epochs) for a in names}
    out = {
        a: _train(f"attacker-{a}", lambda a=a: make_attacker(a, dim, shape), data, cfg, epochs[a], log, progress)
        for a in names
    }
    if cfg.identity_attacker:
        base = cfg.identity_attacker
        name = f"{base}+id"
        key = _key(name, data.train_key, data.encoder_key, cfg.size, epochs[base], cfg.identity_steps, cfg.seed)
        path = data.cache / "models" / f"attacker-{name}-{key}.safetensors"
        if path.is_file():
            log(f"{name}: reusing {path}")
            out[name] = load_model(path)
        else:
            t = time.time()
            model, _ = finetune_identity(
                copy.deepcopy(out[base]),
                data.z_train,
                data.x_train,
                differentiable(data.encoder),
                steps=cfg.identity_steps,
                seed=cfg.seed,
                progress=progress,
                log=log,
            )
            save_model(model, path, metadata={KEY_ENCODER: data.encoder_key})
            log(f"{name}: fine-tuned in {time.time() - t:.0f} s")
            out[name] = model
        if base not in cfg.attackers:
            del out[base]
    return out


def _embed_recs(encoder, rec: torch.Tensor, cache: Path, progress: bool, desc: str) -> torch.Tensor:
    from ..faces.embed import embed_faces

    return embed_faces(encoder, rec.contiguous(), cache_dir=cache, progress=progress, desc=desc)


def attack_scores(
    data: _Data, attacker: torch.nn.Module, templates: torch.Tensor, progress: bool, label: str
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


def utility(data: _Data, templates: torch.Tensor) -> dict[str, float]:
    """Verification of protected enrolled templates (rows of the test files) against clean probes."""
    p = data.protocol
    d = pair_distances(templates[p.first], data.z_test[p.second])
    acc, std, _ = verification_accuracy(d, p.same, folds=p.fold)
    return {
        "acc": 100 * acc,
        "acc_std": 100 * std,
        # None where the impostor pairs cannot measure FAR 1e-3 (fewer than 1,000)
        "tar_at_far_1e-3": 100 * tar_at_far(d, p.same, 1e-3) if far_supported(int((~p.same).sum()), 1e-3) else None,
        "impostor_pairs": int((~p.same).sum()),
        "mean_cosine_to_clean": float(
            torch.nn.functional.cosine_similarity(templates[data.enrolled], data.z_test[data.enrolled]).mean()
        ),
    }


def prepare(
    cfg: FacesEvalConfig, out: Path, cache_dir: str | Path | None, log: Callable[[str], None], progress: bool
) -> tuple[_Data, torch.nn.Module, dict[str, torch.nn.Module]]:
    """What every real-faces run starts from (all cached): the data, the shadow decoder, the attackers."""
    from ..faces.align import default_cache_dir

    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data = _Data(cfg, cache, log, progress)
    dim, shape = data.z_test.shape[1], (3, cfg.size, cfg.size)
    log(f"system threshold {data.threshold:.3f} (squared L2); E2 threshold {data.e2_threshold}")
    shadow = _train(
        "shadow-mlp", lambda: MLPDecoder(dim, cfg.shadow_hidden, shape), data, cfg, cfg.shadow_epochs, log, progress
    )
    return data, shadow, _attackers(data, cfg, log, progress)


def run_faces_evaluation(
    cfg: FacesEvalConfig,
    out_dir: str | Path,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the real-faces evaluation; write ``report.md``, ``results.json``, ``frontier.png`` and
    ``grid.png`` to ``out_dir`` and return the results."""
    t0 = time.time()
    out = Path(out_dir)
    data, shadow, attackers = prepare(cfg, out, cache_dir, log, progress)
    dim = data.z_test.shape[1]

    z = data.z_test
    rows = torch.from_numpy(data.enrolled)
    alpha = cfg.eps * cfg.alpha_ratio

    def advface(start: str, eps: float, images: torch.Tensor | None = None) -> torch.Tensor:
        out_z = z.clone()
        out_z[rows] = protect(
            z[rows],
            shadow,
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
    for label, start, imgs in (
        ("AdvFace online (start=original, x known)", "original", data.x_test[rows]),
        ("AdvFace offline (start=shadow, eq. 3)", "shadow", None),
        ("AdvFace, package default (start=random)", "random", None),
    ):
        t = time.time()
        methods[label] = advface(start, cfg.eps, imgs)
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
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    from .faces_report import write_faces_report

    written = write_faces_report(results, data.x_test[data.protocol.first[data.priv]], recs, out)
    log(f"wrote {out}: results.json, {', '.join(written)} in {time.time() - t0:.0f} s")
    return results
