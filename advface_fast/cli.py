"""The ``advface-fast`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .cli_protection import add_protection_args, load_models, protection_kwargs
from .settings import PRECISIONS


def _protect(args: argparse.Namespace) -> int:
    from .protector import protect

    decoder, encoder = load_models(args)
    protect(
        args.input,
        decoder,
        encoder,
        images=args.images,
        device=args.device,
        out=args.output,
        **protection_kwargs(args),
    )
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from .keys import generate_key

    print(f"wrote {generate_key(args.path)} (32 random bytes, hex, mode 0600): keep it out of the gallery's reach")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    import numpy as np

    from .keys import rotate

    z = np.load(args.input, allow_pickle=False, mmap_mode="r")
    if z.ndim != 2 or z.dtype.kind != "f":
        raise ValueError(f"{args.input}: expected (N, D) float features, got {z.shape} {z.dtype}")
    if not np.isfinite(z).all():
        raise ValueError(f"{args.input} holds NaN or Inf")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pass --overwrite to replace it")
    tmp = args.output + ".partial.npy"
    np.save(tmp, rotate(np.ascontiguousarray(z), args.key_file))
    os.replace(tmp, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _protect_distributed(args: argparse.Namespace) -> int:
    from .distributed import protect_distributed

    result = protect_distributed(
        args.input,
        args.output,
        args.decoder,
        args.encoder,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        rows_per_task=args.rows_per_task,
        feature_column=args.feature_column,
        id_column=args.id_column,
        max_retries=args.max_retries,
        address=args.address,
        **protection_kwargs(args),
    )
    print(
        f"wrote {result.rows} rows in {result.shards} shards to {result.out_dir} "
        f"({result.tasks_run} of {result.tasks} tasks run, {result.workers} workers on {result.device}, "
        f"{result.nodes} node{'s' if result.nodes != 1 else ''}, "
        f"{result.rows_per_second:,.0f} rows/s)",
        file=sys.stderr,
    )
    return 0


def _backends(args: argparse.Namespace) -> int:
    import torch

    from .backends import available_backends, resolve_backend
    from .decoders import MLPDecoder
    from .errors import BackendUnavailableError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}")
    for name, reason in available_backends(device=device).items():
        state = "available" if reason is None else "unavailable: " + reason
        if name == "cuda" and reason is None:  # which of its two loops (ADVFACE_CUDA_LOOP)
            from .cuda_engine import active_impl

            state += f" ({active_impl()} loop)"
        if name == "mlp" and reason is None and device == "cpu":  # its bf16 GEMMs on small batches
            from . import mlp_engine
            from .ops import amx_unavailable_reason

            amx = amx_unavailable_reason() if mlp_engine.CPU_AMX else "ADVFACE_CPU_AMX=0"
            state += f" (bf16 GEMMs of <= {mlp_engine.AMX_MAX_ROWS} rows: " + (
                "AMX tiles)" if amx is None else "oneDNN)"
            )
        print(f"{name:7} {state}")
    dec = MLPDecoder(8, [8], (1, 2, 2))  # what auto picks for an MLPDecoder (other decoders: torch)
    picks = []
    for precision in PRECISIONS:
        try:
            picks.append(f"{precision} -> {resolve_backend('auto', dec, torch.device(device), precision).name}")
        except BackendUnavailableError:  # tf32 on a CPU, no CUDA device (the reasons are above)
            picks.append(f"{precision} -> none")
    print("auto    for an MLPDecoder: " + ", ".join(picks))
    return 0


def _load_images(spec: str, size: int | None):
    """``synthetic:IDS:PER_ID[:SIZE]``, an ``.npy`` image array, a ``.bin`` file or an image folder."""
    from pathlib import Path

    from .data import SynthFaces, read_image_folder, read_insightface_bin, read_npy_images

    if spec.startswith("synthetic:"):
        parts = [int(p) for p in spec.split(":")[1:]]
        if len(parts) not in (2, 3):
            raise ValueError(f"expected synthetic:IDS:PER_ID[:SIZE], got {spec!r}")
        return SynthFaces(parts[2] if len(parts) == 3 else (size or 32)).dataset(parts[0], parts[1])[0]
    path = Path(spec)
    if path.suffix == ".npy":
        return read_npy_images(path)
    if path.suffix == ".bin":
        return read_insightface_bin(path, size)[0]
    return read_image_folder(path, size)[0]


def _aligned_folder(folder: str, size: int | None, progress: bool):
    """Photos of an identity folder (or a flat folder), YuNet-aligned to the ArcFace 112x112
    template (cached), as ``(N, 3, S, S)`` in [-1, 1]; photos without a face are dropped and counted."""
    from pathlib import Path

    from .data.readers import IMAGE_SUFFIXES
    from .faces.align import align_files
    from .faces.embed import faces_to_tensor

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--align needs an image folder, got {folder}")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    aligned = align_files(files, pick="largest", progress=progress)
    counts = aligned.counts()
    print(f"aligned {len(files)} photos: {counts}; {counts['fallback']} without a face dropped", file=sys.stderr)
    return faces_to_tensor(aligned.faces[aligned.ok()], size)


def _train_shadow(args: argparse.Namespace) -> int:
    import json

    import torch

    from .decoders import ConvDecoder, MLPDecoder
    from .encoder_loader import as_encoder
    from .serialization import KEY_ENCODER, save_model
    from .train import train_decoder

    encoder = as_encoder(args.encoder)
    if args.align:
        images = _aligned_folder(args.images, args.size, progress=not args.no_progress)
    else:
        images = _load_images(args.images, args.size)
        if getattr(getattr(encoder, "spec", None), "alignment", "none") != "none":
            print(
                f"advface-fast train-shadow: note: {encoder.name} expects {encoder.spec.alignment} aligned faces; "
                "pass --align if these photos are not aligned already",
                file=sys.stderr,
            )
    fp = json.dumps(encoder.fingerprint()) if hasattr(encoder, "fingerprint") else None
    with torch.no_grad():
        dim = encoder(images[:2]).shape[1]
    shape = tuple(images.shape[1:])
    decoder = MLPDecoder(dim, args.hidden, shape) if args.arch == "mlp" else ConvDecoder(dim, shape, args.base_channels)
    n_val = max(1, int(len(images) * args.val_fraction))
    decoder, _ = train_decoder(
        encoder,
        images[n_val:],
        decoder,
        val_images=images[:n_val],
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        checkpoint=args.checkpoint,
        resume=not args.no_resume,
        progress=not args.no_progress,
        run={"encoder": fp, "arch": args.arch, "image_shape": list(shape)},
    )
    save_model(decoder, args.out, metadata={KEY_ENCODER: fp} if fp else None)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from .eval import EvalConfig, run_evaluation

    cfg = EvalConfig.from_json(args.config)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            users=200,
            attacker_ids=200,
            attacker_per_id=6,
            attacker_epochs=4,
            attackers=["shipped_conv", "mlp_deep"],
            sweep_eps=[0.02, 0.04],
            laplace_epsilons=[50.0],
            sweep_steps=[5],
            sweep_alpha_ratio=[0.1],
            note="--quick run: a smoke test with undertrained attackers, not for conclusions",
        )
    run_evaluation(cfg, args.out_dir)
    return 0


def _eval_input(args: argparse.Namespace) -> int:
    import dataclasses

    from .eval.duetface_method import DuetFaceMethod  # noqa: F401  (registers the method)
    from .eval.input_methods import InputEvalConfig, evaluate_input_method

    cfg = InputEvalConfig.from_json(args.config)
    if args.method:
        cfg = dataclasses.replace(cfg, method=args.method)
    evaluate_input_method(cfg, args.out_dir, args.cache_dir)
    return 0


def _faces_overrides(args: argparse.Namespace) -> dict:
    """The FacesEvalConfig settings the data options of ``_add_faces_data_args`` set."""
    overrides = {
        k: v
        for k, v in {
            "pairs": args.pairs,
            "pairs_images": args.pairs_images,
            "test_folder": args.test_folder,
            "train_images": args.train_images,
            "train_identity": args.train_identity,
            "encoder": args.encoder,
            "judge": args.judge,
        }.items()
        if v is not None
    }
    if args.test_folder:
        overrides["pairs"] = None
    if args.train_images and args.train_identity is None:
        overrides["train_identity"] = None  # a folder with one sub-folder per identity
    return overrides


def _faces_config(args: argparse.Namespace):
    """FacesEvalConfig from --config and the data options."""
    import dataclasses

    from .eval.faces import FacesEvalConfig

    return dataclasses.replace(FacesEvalConfig.from_json(args.config), **_faces_overrides(args))


def _eval_faces(args: argparse.Namespace) -> int:
    import dataclasses

    from .eval.faces import run_faces_evaluation

    cfg = _faces_config(args)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            shadow_epochs=3,
            attacker_epochs=3,
            attackers=cfg.attackers[:1],
            sweep_eps=[cfg.eps],
            sweep_laplace=[cfg.laplace_epsilon],
            privacy_per_fold=min(cfg.privacy_per_fold, 20),
            judge_per_fold=min(cfg.judge_per_fold, 5),
            note="--quick run: a smoke test with undertrained decoders, not for conclusions",
        )
    run_faces_evaluation(cfg, args.out_dir, cache_dir=args.cache_dir, progress=not args.no_progress)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .eval.calibrate import run_calibration

    result = run_calibration(
        _faces_config(args),
        args.eps_grid,
        args.out_dir,
        max_loss=args.max_loss,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )
    print(f"eps = {result['recommendation']['eps']}: {result['recommendation']['reason']}")
    return 0 if result["recommendation"]["eps"] is not None else 1


def _add_faces_data_args(p: argparse.ArgumentParser) -> None:
    """The data, model and cache options ``eval-faces`` and ``calibrate`` share."""
    p.add_argument("--pairs", default=None, help="LFW-format pairs.txt (default: ../shared/data/lfw/pairs.txt)")
    p.add_argument("--pairs-images", default=None, help="image root of --pairs (default: lfw-deepfunneled beside it)")
    p.add_argument("--test-folder", default=None, help="instead of --pairs: one sub-folder per identity")
    p.add_argument("--train-images", default=None, help="training faces (default: the CelebA subset's images)")
    p.add_argument(
        "--train-identity",
        default=None,
        help="'<file> <identity>' list for --train-images (default: CelebA's; with --train-images alone, "
        "the folder has one sub-folder per identity)",
    )
    p.add_argument("--encoder", default=None, help="'sface' (default), or an .onnx/.safetensors with its contract")
    p.add_argument("--judge", default=None, choices=("dlib", "none"), help="independent recogniser (default dlib)")
    p.add_argument("--config", default=None, help="JSON file overriding FacesEvalConfig settings")
    p.add_argument("--cache-dir", default=None, help="cache folder (default $ADVFACE_CACHE or ~/.cache/advface_fast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _threat(args: argparse.Namespace) -> int:
    import dataclasses

    from .eval.threat.suite import ThreatConfig, run_threat_suite

    cfg = ThreatConfig.from_json(args.config)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            users=100,
            attacker_ids=200,
            judge_ids=200,
            judge_epochs=2,
            shadow_epochs=2,
            purifier_epochs=3,
            identity_steps=20,
            optimisation_people=10,
            optimisation_steps=10,
            procrustes_pairs=[64, 256],
            note="--quick run: a smoke test with undertrained models, not for conclusions",
        )
    run_threat_suite(cfg, args.out_dir)
    return 0


def _threat_faces(args: argparse.Namespace) -> int:
    import dataclasses

    from .eval.threat.faces_suite import FacesThreatConfig, run_faces_threat_suite

    cfg = FacesThreatConfig.from_json(args.config)
    cfg = dataclasses.replace(cfg, faces={**cfg.faces, **_faces_overrides(args)})
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            faces={
                **cfg.faces,
                "shadow_epochs": 2,
                "attacker_epochs": 2,
                "attacker_epochs_by_name": {},
                "identity_steps": 5,
                "privacy_per_fold": 5,
                "judge_per_fold": 3,
            },
            own_shadow_epochs=2,
            purifier_epochs=2,
            optimisation_people=3,
            optimisation_steps=3,
            procrustes_pairs=[32],
            oracle_queries=[128],
            note="--quick run: a smoke test with undertrained models, not for conclusions",
        )
    run_faces_threat_suite(cfg, args.out_dir, cache_dir=args.cache_dir, progress=not args.no_progress)
    return 0


def _train_default(args: argparse.Namespace) -> int:
    from .defaults import MODELS_ENV, train_default

    train_default(
        args.out_dir,
        ids=args.ids,
        per_id=args.per_id,
        encoder_epochs=args.encoder_epochs,
        decoder_epochs=args.decoder_epochs,
        progress=not args.no_progress,
    )
    print(f"wrote {args.out_dir}; use them with: export {MODELS_ENV}={args.out_dir}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out_dir)
    return 0


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text states it already (flags and
    options without a default say nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if d in (None, False, argparse.SUPPRESS) or "default" in text.lower() or not action.option_strings:
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else d
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="advface-fast", description="AdvFace protection of face-feature galleries.")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser(
        "protect",
        help="protect a .npy gallery of features into a new .npy file",
        description="Replace each stored feature by its AdvFace-protected version (streamed, resumable).",
    )
    pr.add_argument("input", help="gallery of features, (N, D) float .npy")
    pr.add_argument("output", help="where to write the protected gallery (.npy)")
    add_protection_args(pr)
    pr.add_argument("--images", help="online mode: original images (N, C, H, W) .npy as the L1 target")
    pr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    pr.set_defaults(func=_protect)

    pd = sub.add_parser(
        "protect-distributed",
        help="protect a folder of .npy or Parquet shards on a Ray cluster (pip install 'advface_fast[ray]')",
        description="Protect a sharded gallery with a Ray Data actor pool; output shards mirror the input's.",
    )
    pd.add_argument("input", help="folder of .npy shards (+ optional <stem>.ids.npy) or Parquet shards")
    pd.add_argument("output", help="new or empty folder for the protected shards (or an interrupted run's)")
    add_protection_args(pd)
    pd.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (HEAD_IP:6379, 'auto', 'ray://head:10001'); default: $RAY_ADDRESS, "
        "else a new local instance",
    )
    pd.add_argument("--workers", type=int, default=None, help="actors (default: one per GPU, else per CPU)")
    pd.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs (torch threads) per actor (default 1)")
    pd.add_argument("--gpus-per-worker", type=float, default=None, help="default: 1 if the cluster has GPUs, else 0")
    pd.add_argument("--rows-per-task", type=int, default=65_536, help="rows of an .npy shard per task")
    pd.add_argument("--feature-column", default="feature", help="Parquet feature column (list of floats)")
    pd.add_argument("--id-column", default="id", help="Parquet id column (integers or strings)")
    pd.add_argument("--max-retries", type=int, default=3, help="restarts of a dead worker before the run fails")
    pd.set_defaults(func=_protect_distributed)

    kg = sub.add_parser("keygen", help="write a new secret key file (32 random bytes, hex, mode 0600)")
    kg.add_argument("path", help="key file to create (refused if it exists)")
    kg.set_defaults(func=_keygen)

    ro = sub.add_parser(
        "rotate",
        help="apply a key's secret rotation to features (probes at match time, for galleries stored with --rotate)",
    )
    ro.add_argument("input", help="(N, D) float .npy")
    ro.add_argument("output", help=".npy to write")
    ro.add_argument("--key-file", required=True, help="the key the gallery was protected with")
    ro.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ro.set_defaults(func=_rotate)

    b = sub.add_parser("backends", help="list the backends and why any cannot run")
    b.add_argument("--device", default=None, help="device to check for (default: cuda if there is one, else cpu)")
    b.set_defaults(func=_backends)

    ts = sub.add_parser(
        "train-shadow",
        help="train a shadow (or attacker) decoder for an encoder",
        description="Train a feature-to-image decoder with the L1 loss of equation (1).",
    )
    ts.add_argument(
        "--encoder",
        required=True,
        help="face encoder: 'sface', .safetensors (advface_fast) or .onnx (known, or with a <file>.onnx.json "
        "input contract); recorded in the decoder file",
    )
    ts.add_argument(
        "--images",
        required=True,
        help="training faces: image folder, insightface .bin, (N,3,H,W) .npy, or synthetic:IDS:PER_ID",
    )
    ts.add_argument("--out", required=True, help="decoder file to write (.safetensors)")
    ts.add_argument("--arch", choices=("mlp", "conv"), default="mlp", help="MLPDecoder (fused kernels) or ConvDecoder")
    ts.add_argument("--hidden", type=int, nargs="+", default=[512, 1024], help="MLP hidden widths")
    ts.add_argument("--base-channels", type=int, default=32, help="ConvDecoder width")
    ts.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE (default: as read)")
    ts.add_argument(
        "--align",
        action="store_true",
        help="detect and align the photos of --images (a folder) to the ArcFace 112x112 template first (YuNet, cached)",
    )
    ts.add_argument("--epochs", type=int, default=20, help="training epochs")
    ts.add_argument("--batch-size", type=int, default=256, help="images per step")
    ts.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine schedule)")
    ts.add_argument("--val-fraction", type=float, default=0.05, help="fraction of the images held out for validation")
    ts.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    ts.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling")
    ts.add_argument("--checkpoint", default=None, help="checkpoint file, saved every epoch")
    ts.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    ts.add_argument("--no-progress", action="store_true", help="no progress bars")
    ts.set_defaults(func=_train_shadow)

    ev = sub.add_parser(
        "eval",
        help="evaluate protection: utility, attacks, baselines, sweep; writes a report",
        description="Run the evaluation harness on the synthetic-face world with the default models.",
    )
    ev.add_argument("--config", default=None, help="JSON file overriding EvalConfig settings")
    ev.add_argument("--out-dir", default="advface_eval_out", help="report folder")
    ev.add_argument("--quick", action="store_true", help="a small run (a few minutes on CPU)")
    ev.set_defaults(func=_eval)

    ef = sub.add_parser(
        "eval-faces",
        help="evaluate protection on real photographs (LFW protocol, or your own labelled faces)",
        description="The LFW protocol (or identity folders) with a real encoder: aligned, embedded, "
        "decoders trained on other faces, AdvFace and the baselines scored by E and an independent "
        "recogniser. Every stage is cached under --cache-dir.",
    )
    _add_faces_data_args(ef)
    ef.add_argument(
        "--out-dir", default="advface_eval_faces_out", help="report folder (default advface_eval_faces_out)"
    )
    ef.add_argument("--quick", action="store_true", help="a smoke test: 3 epochs, one attacker, 20 pairs per fold")
    ef.set_defaults(func=_eval_faces)

    ei = sub.add_parser(
        "eval-input",
        help="evaluate an input-side baseline (DuetFace) in the synthetic world, beside AdvFace's rows",
        description="Trains the method (cached), then verification, template attackers and attackers of what "
        "its server receives, judged as in `advface-fast eval`.",
    )
    ei.add_argument("--method", default=None, help="input method (default DuetFace, or the config's)")
    ei.add_argument("--config", default=None, help="JSON overrides of advface_fast.eval.input_methods.InputEvalConfig")
    ei.add_argument("--out-dir", default="advface_eval_input_out", help="report folder")
    ei.add_argument(
        "--cache-dir", default=os.environ.get("ADVFACE_CACHE", "advface_cache"), help="trained models ($ADVFACE_CACHE)"
    )
    ei.set_defaults(func=_eval_input)

    ca = sub.add_parser(
        "calibrate",
        help="recommend eps for your encoder and data: the largest whose verification loss stays within a bound",
        description="Sweep eps on a real-faces protocol (as eval-faces) and recommend the largest eps whose "
        "verification accuracy loss is at most --max-loss points, with the attack rates at each eps.",
    )
    _add_faces_data_args(ca)
    ca.add_argument(
        "--eps-grid",
        type=float,
        nargs="+",
        default=[0.01, 0.02, 0.04, 0.06, 0.08, 0.12],
        help="eps values to try (default 0.01 0.02 0.04 0.06 0.08 0.12)",
    )
    ca.add_argument("--max-loss", type=float, default=0.5, help="accuracy loss bound in points (default 0.5)")
    ca.add_argument("--out-dir", default="advface_calibration_out", help="where calibration.json goes")
    ca.set_defaults(func=_calibrate)

    th = sub.add_parser(
        "threat",
        help="the threat-model suite: attackers who know the method against the defences (synthetic world)",
        description="Cross the defence configurations (public seed, secret key, private shadow, keyed rotation) "
        "with attackers that know the method (purifiers, identity-loss decoders, white-box optimisation, "
        "Procrustes key recovery), judged by E and an independent encoder. About 40 minutes on 2 CPU cores.",
    )
    th.add_argument("--out-dir", default="advface_threat_out", help="report folder (default advface_threat_out)")
    th.add_argument("--config", default=None, help="JSON file overriding ThreatConfig settings")
    th.add_argument("--quick", action="store_true", help="a smoke test (a few minutes on 2 CPU cores)")
    th.set_defaults(func=_threat)

    tf = sub.add_parser(
        "threat-faces",
        help="the threat-model suite on real faces (LFW with SFace, judged by dlib)",
        description="The defences (public seed, secret key, keyed rotation, both) against attackers that know "
        "the method on the real-faces protocol of eval-faces (whose cached data, shadow decoder and attackers "
        "it reuses), the attacks on the rotation's key (known pairs, moment alignment, a score oracle) and "
        "unlinkability across two keys. --config is a FacesThreatConfig JSON (its 'faces' object holds "
        "FacesEvalConfig settings).",
    )
    _add_faces_data_args(tf)
    tf.add_argument(
        "--out-dir", default="advface_threat_faces_out", help="report folder (default advface_threat_faces_out)"
    )
    tf.add_argument("--quick", action="store_true", help="a smoke test with undertrained models")
    tf.set_defaults(func=_threat_faces)

    td = sub.add_parser(
        "train-default",
        help="reproduce the shipped default models of the synthetic-face world",
        description="Train the default encoder, shadow decoder and attacker (~10 min on 2 CPU cores).",
    )
    td.add_argument(
        "--out-dir",
        required=True,
        help="folder to write them to (required; never the installed package); load_default() and the "
        "commands that use the default models read them from there when $ADVFACE_MODELS points at it",
    )
    td.add_argument("--ids", type=int, default=1000, help="training identities")
    td.add_argument("--per-id", type=int, default=16, help="images per identity")
    td.add_argument("--encoder-epochs", type=int, default=8, help="epochs of the encoder")
    td.add_argument("--decoder-epochs", type=int, default=20, help="epochs of the shadow decoder and the attacker")
    td.add_argument("--no-progress", action="store_true", help="no progress bars")
    td.set_defaults(func=_train_default)

    d = sub.add_parser("demo", help="run the end-to-end demo on a toy world (about a minute on CPU)")
    d.add_argument("--out-dir", default="advface_demo_out", help="folder of the demo's picture and numbers")
    d.set_defaults(func=_demo)
    from .deploy.commands import add_deploy_commands

    add_deploy_commands(sub)
    for cmd in sub.choices.values():
        cmd.formatter_class = _DefaultsFormatter
    return p


def _check_device(args: argparse.Namespace) -> None:
    """``--device cuda`` on a machine without CUDA: say so before anything runs."""
    device = getattr(args, "device", None)
    if device and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: no CUDA device is available here (use --device cpu)")


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: every failure is one line on stderr and a non-zero status, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        _check_device(args)
        return int(args.func(args))
    except KeyboardInterrupt:
        print(
            f"advface-fast {args.command}: interrupted; an output in progress keeps its checkpoint "
            "(run the same command again to resume)",
            file=sys.stderr,
        )
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:  # OSError: read-only, ENOSPC, ...
        print(f"advface-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
