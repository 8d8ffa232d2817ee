"""The ``advface-fast`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .backends import BACKEND_NAMES, PRECISIONS
from .engine import START_MODES


def _protect(args: argparse.Namespace) -> int:
    from .encoders import OnnxEncoder, as_encoder
    from .protector import protect
    from .serialization import load_model

    decoder = load_model(args.decoder)
    encoder = None
    if args.encoder:
        encoder = OnnxEncoder(args.encoder) if args.encoder.endswith(".onnx") else as_encoder(args.encoder)
    protect(
        args.input,
        decoder,
        encoder,
        eps=args.eps,
        alpha=args.alpha,
        steps=args.steps,
        start=args.start,
        images=args.images,
        renorm=not args.no_renorm,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        seed=args.seed,
        out=args.output,
        overwrite=args.overwrite,
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _backends(args: argparse.Namespace) -> int:
    from .backends import available_backends

    for name, reason in available_backends(device=args.device).items():
        print(f"{name:7} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out_dir)
    return 0


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
    pr.add_argument("--decoder", required=True, help="shadow decoder (.safetensors written by advface_fast)")
    pr.add_argument("--encoder", help="face encoder: .safetensors (advface_fast) or .onnx; needed for --start shadow")
    pr.add_argument("--eps", type=float, required=True, help="L-inf radius of the perturbation")
    pr.add_argument("--alpha", type=float, required=True, help="sign-step size")
    pr.add_argument("--steps", type=int, required=True, help="number of steps")
    pr.add_argument("--start", choices=START_MODES, default="shadow", help="start point (default: shadow, the paper)")
    pr.add_argument("--images", help="online mode: original images (N, C, H, W) .npy as the L1 target")
    pr.add_argument(
        "--no-renorm", action="store_true", help="keep the raw result instead of rescaling to the input norm"
    )
    pr.add_argument("--batch-size", type=int, default=None)
    pr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    pr.add_argument("--backend", choices=BACKEND_NAMES, default="auto")
    pr.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GEMM precision inside the loop")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    pr.add_argument("--no-resume", action="store_true", help="discard a partial output instead of resuming it")
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=_protect)

    b = sub.add_parser("backends", help="list the backends and why any cannot run")
    b.add_argument("--device", default="cuda", help="device to check for (default: cuda)")
    b.set_defaults(func=_backends)

    d = sub.add_parser("demo", help="run the end-to-end demo on a toy world (about a minute on CPU)")
    d.add_argument("--out-dir", default="advface_demo_out")
    d.set_defaults(func=_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        print(f"advface-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
