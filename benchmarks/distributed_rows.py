"""Rows per second of the Ray Data pipeline with 1 and 2 local CPU workers, beside single-process
:func:`advface_fast.protect` with 1 and 2 threads, all in one run on the same sharded gallery.

The gallery is ``--rows`` unit-norm features in ``--shards`` ``.npy`` shards; the decoder is the
shipped default shadow decoder (128-d features, 3x32x32 images) unless ``--dim/--hidden/--image``
give a random MLP. Every distributed output is checked against the single-process result. The
distributed times are end to end (actor start and model load included, Ray itself already up).

    python benchmarks/distributed_rows.py --json benchmarks/results/distributed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import advface_fast as af
from advface_fast.distributed import protect_distributed


def _unit_rows(rows: int, dim: int) -> np.ndarray:
    z = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=32_768)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--rows-per-task", type=int, default=4096)
    p.add_argument("--dim", type=int, default=None, help="random MLP decoder instead of the shipped one")
    p.add_argument("--hidden", type=int, nargs="*", default=[256])
    p.add_argument("--image", type=int, nargs=3, default=[3, 16, 16])
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import ray

    if args.dim is None:
        decoder = af.load_default().shadow
    else:
        torch.manual_seed(0)
        decoder = af.MLPDecoder(args.dim, args.hidden, tuple(args.image))
    dim = decoder.in_dim
    x = _unit_rows(args.rows, dim)
    work = Path(tempfile.mkdtemp(prefix="advface_dist_bench_"))
    results: dict[str, dict[str, float]] = {}
    try:
        src = work / "in"
        src.mkdir()
        for i, part in enumerate(np.array_split(x, args.shards)):
            np.save(src / f"part-{i:04d}.npy", part)
        ref = None
        for threads in (1, 2):
            torch.set_num_threads(threads)
            t = time.perf_counter()
            out = af.protect(x, decoder, progress=False)
            s = time.perf_counter() - t
            ref = out if ref is None else ref
            results[f"protect, 1 process, {threads} thread(s)"] = {"seconds": s, "rows_per_second": args.rows / s}
            print(f"protect {threads} thread(s): {args.rows / s:,.0f} rows/s", file=sys.stderr)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        for workers in (1, 2):
            dst = work / f"out{workers}"
            res = protect_distributed(
                src, dst, decoder, workers=workers, cpus_per_worker=1, rows_per_task=args.rows_per_task, progress=False
            )
            got = np.concatenate([np.load(dst / f"part-{i:04d}.npy") for i in range(args.shards)])
            max_diff = float(np.abs(got - ref).max())
            results[f"protect_distributed, {workers} worker(s) x 1 CPU"] = {
                "seconds": res.seconds,
                "rows_per_second": res.rows_per_second,
                "max_abs_diff_vs_protect": max_diff,
            }
            print(
                f"distributed {workers} worker(s): {res.rows_per_second:,.0f} rows/s, diff {max_diff:.2g}",
                file=sys.stderr,
            )
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = (results[f"protect_distributed, {w} worker(s) x 1 CPU"]["rows_per_second"] for w in (1, 2))
    report = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'unknown'})",
        "versions": {"torch": torch.__version__, "ray": ray.__version__, "numpy": np.__version__},
        "gallery": {"rows": args.rows, "dim": dim, "shards": args.shards, "rows_per_task": args.rows_per_task},
        "decoder": decoder.config(),
        "results": results,
        "speedup_2_workers_vs_1": two / one,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
