"""The ``advface-fast`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .evaluate import add_eval_commands
from .protect_options import add_protection_args, gallery_ids, load_models, protection_kwargs
from .train import add_train_commands


def _protect(args: argparse.Namespace) -> int:
    from .. import provenance
    from ..protector import protect

    decoder, encoder = load_models(args)
    ids = gallery_ids(args.input, args.ids)
    protect(
        args.input,
        decoder,
        encoder,
        images=args.images,
        device=args.device,
        out=args.output,
        row_ids=ids,
        reprotect=args.reprotect,
        **protection_kwargs(args),
    )
    side = provenance.sidecar_path(args.output)
    print(
        f"wrote {args.output} and its provenance {side.name}" + (" and ids" if ids is not None else ""), file=sys.stderr
    )
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from ..keys import generate_key

    print(f"wrote {generate_key(args.path)} (32 random bytes, hex, mode 0600): keep it out of the gallery's reach")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.atomic import atomic_path, check_output
    from ..rotation import rotate

    out = check_output(args.output, args.overwrite, args.input)
    z = np.load(args.input, allow_pickle=False, mmap_mode="r")
    if z.ndim != 2 or z.dtype.kind != "f":
        raise ValueError(f"{args.input}: expected (N, D) float features, got {z.shape} {z.dtype}")
    if not np.isfinite(z).all():
        raise ValueError(f"{args.input} holds NaN or Inf")
    rotated = rotate(np.ascontiguousarray(z), args.key_file)
    with atomic_path(out, ".npy") as tmp:
        np.save(tmp, rotated)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _protect_distributed(args: argparse.Namespace) -> int:
    from ..distributed import protect_distributed

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

    from ..engines.report import engine_report

    print("\n".join(engine_report(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))))
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
    pr.add_argument(
        "--ids",
        default=None,
        help="(N,) int64 .npy of enrolment ids keying each row's noise (default: the input's <stem>.ids.npy, as "
        "embed writes, else 0..N-1); written beside the output",
    )
    pr.add_argument("--reprotect", action="store_true", help="accept an input whose provenance says it is protected")
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

    add_train_commands(sub)
    add_eval_commands(sub)
    d = sub.add_parser("demo", help="run the end-to-end demo on a toy world (about a minute on CPU)")
    d.add_argument("--out-dir", default="advface_demo_out", help="folder of the demo's picture and numbers")
    d.set_defaults(func=_demo)
    from .deploy import add_deploy_commands
    from .match import add_match_commands

    add_deploy_commands(sub)
    add_match_commands(sub)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as typed, for reports that state how to reproduce them
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
    except (
        ValueError,
        TypeError,
        OSError,
        RuntimeError,
        ImportError,
        KeyError,
    ) as exc:  # OSError: read-only, ENOSPC, ...
        print(f"advface-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "psycopg":  # the database's errors name the problem
            raise
        print(f"advface-fast {args.command}: database error: {str(exc).strip()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
