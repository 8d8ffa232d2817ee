"""The options of the commands that protect, and their translation into Protector keywords."""

from __future__ import annotations

import argparse

from ..engines import BACKEND_NAMES
from ..settings import DEFAULT_EPS, DEFAULT_START, DEFAULT_STEPS, PRECISIONS, START_MODES


def setting_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`~advface_fast.settings.RunSettings` fields of the options ``add_setting_args`` declares
    (every command that protects); with ``--deployment``, its settings replace the options'."""
    deployed = deployment_settings(args)
    return {
        **_option_settings(args),
        **deployed,
    }


def deployment_settings(args: argparse.Namespace) -> dict:
    """The settings of ``--deployment`` (empty without it); refuses ``--eps``/``--alpha`` beside it."""
    path = getattr(args, "deployment", None)
    if not path:
        return {}
    from ..match.config import DeploymentConfig

    if args.eps is not None or args.alpha is not None:
        raise ValueError("--deployment sets eps and alpha (the threshold was fitted for them): drop --eps/--alpha")
    if getattr(args, "shards", 1) != 1:
        raise ValueError("--deployment sets the shard keys (calibrate-deployment --shards): drop --shards")
    return DeploymentConfig.load(path).run_settings()


def _option_settings(args: argparse.Namespace) -> dict:
    return {
        "eps": args.eps,
        "alpha": args.alpha,
        "steps": args.steps,
        "start": args.start,
        "renorm": not args.no_renorm,
        "backend": args.backend,
        "precision": args.precision,
        "seed": args.seed,
        "key": args.key_file,
        "rotate": args.rotate,
        "shards": args.shards,
    }


def protection_kwargs(args: argparse.Namespace) -> dict:
    """The keywords of the options ``add_protection_args`` declares (the two gallery-file commands)."""
    return {
        **setting_kwargs(args),
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "resume": not args.no_resume,
        "progress": not args.no_progress,
    }


def add_setting_args(pr: argparse.ArgumentParser, key_required: bool = False) -> None:
    """The decoder, encoder and settings of the protection: every command that protects."""
    pr.add_argument("--decoder", required=True, help="shadow decoder (.safetensors written by advface_fast)")
    pr.add_argument(
        "--encoder",
        help="face encoder ('sface', 'mobilefacenet', .safetensors, or .onnx/.tflite with a known or sidecar input "
        "contract); needed for "
        "--start shadow; refused if the decoder file records another",
    )
    pr.add_argument(
        "--eps",
        type=float,
        default=None,
        help=f"L-inf radius, in the features' units (default {DEFAULT_EPS} x sqrt(128 / D): {DEFAULT_EPS} for 128-d, "
        f"{DEFAULT_EPS / 2:g} for 512-d unit templates; `advface-fast calibrate` measures it on your data)",
    )
    pr.add_argument("--alpha", type=float, default=None, help="sign-step size (default eps / 5)")
    pr.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"number of steps (default {DEFAULT_STEPS})")
    pr.add_argument(
        "--start",
        choices=START_MODES,
        default=DEFAULT_START,
        help=f"start point (default {DEFAULT_START}; 'shadow' is the paper's)",
    )
    pr.add_argument(
        "--no-renorm", action="store_true", help="keep the raw result instead of rescaling to the input norm"
    )
    pr.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="engine; advface-fast backends lists them")
    pr.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GEMM precision inside the loop")
    pr.add_argument("--seed", type=int, default=0, help="public seed of the random start (default 0)")
    pr.add_argument(
        "--key-file",
        default=None,
        required=key_required,
        help="the defender's secret key (advface-fast keygen): keys the random start"
        + ("" if key_required else "; default none (warns)"),
    )
    pr.add_argument(
        "--rotate",
        action="store_true",
        help="store Q z for the key's secret rotation Q (verify/identify rotate probes with the same key)",
    )
    pr.add_argument(
        "--shards",
        type=int,
        default=1,
        help="with --rotate: S shard keys, each enrolment id's shard a keyed hash (an insider's own enrolments "
        "reveal only their shards' rotations; 1:N search rotates each probe S times); default 1, one rotation",
    )
    pr.add_argument(
        "--deployment",
        default=None,
        help="deployment configuration (advface-fast calibrate-deployment): its eps, alpha, steps, start, seed, "
        "rotation and precision replace those options",
    )


def add_protection_args(pr: argparse.ArgumentParser) -> None:
    """The options ``protect`` and ``protect-distributed`` share: the settings and the output's."""
    add_setting_args(pr)
    pr.add_argument(
        "--batch-size", type=int, default=None, help="rows per batch (default: chosen from the device's memory)"
    )
    pr.add_argument("--overwrite", action="store_true", help="replace an existing (complete) output")
    pr.add_argument("--no-resume", action="store_true", help="discard a partial output instead of resuming it")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_models(args: argparse.Namespace) -> tuple:
    """``(decoder, encoder or None)`` of ``--decoder``/``--encoder``, refusing an encoder other
    than the one the decoder file records."""
    from ..encoders.loader import as_encoder
    from ..models.serialization import load_model
    from ..protect_checks import check_trained_for

    decoder = load_model(args.decoder)
    encoder = as_encoder(args.encoder) if args.encoder else None
    check_trained_for(decoder, encoder)
    return decoder, encoder


def gallery_ids(gallery: str, ids: str | None):
    """``--ids`` (an (N,) integer .npy), else the gallery's ``<stem>.ids.npy`` when there is one, else None."""
    import numpy as np

    from ..provenance import ids_path

    path = ids if ids else (ids_path(gallery) if ids_path(gallery).is_file() else None)
    if path is None:
        return None
    a = np.load(path, allow_pickle=False)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{path}: enrolment ids must be a 1-d integer array, got {a.shape} {a.dtype}")
    return a.astype(np.int64)
