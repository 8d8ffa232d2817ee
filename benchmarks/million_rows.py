"""Protect a large on-disk gallery (default 1,000,000 x 512 float32, 2 GB) to disk on the CPU.

Reports rows per second and the process's peak resident memory (``ru_maxrss``), which must stay
under 1.5 GB however large the gallery: the engine streams row batches with pread/pwrite and holds
one batch at a time.

    python benchmarks/million_rows.py                       # the full 1M-row run
    python benchmarks/million_rows.py --rows 100000 --threads 2 --json benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import advface_fast as af
from advface_fast.engines import resolve_backend
from advface_fast.engines.flops import mlp_pgd_flops_per_row_step


def write_gallery(path: Path, rows: int, dim: int, chunk: int = 100_000) -> None:
    """A random unit-norm gallery written in chunks (never held whole in memory)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": (rows, dim)}
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for a in range(0, rows, chunk):
            z = rng.standard_normal((min(chunk, rows - a), dim), dtype=np.float32)
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            f.write(z.tobytes())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--hidden", type=int, nargs="*", default=[256])
    p.add_argument("--image", type=int, nargs=3, default=[3, 16, 16])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--workdir", default=None, help="where the 2 GB input and output go (default: a temp dir)")
    p.add_argument("--json", default=None, help="write the numbers here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    decoder = af.MLPDecoder(args.dim, args.hidden, tuple(args.image))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        src, out = Path(tmp) / "gallery.npy", Path(tmp) / "protected.npy"
        t0 = time.perf_counter()
        write_gallery(src, args.rows, args.dim)
        t_write = time.perf_counter() - t0
        rss_before = peak_rss_mb()
        t1 = time.perf_counter()
        af.protect(
            src,
            decoder,
            eps=0.03,
            alpha=0.005,
            steps=args.steps,
            start="random",
            batch_size=args.batch_size,
            out=out,
            progress=sys.stderr.isatty(),
            device="cpu",
            backend=args.backend,
            precision=args.precision,
        )
        elapsed = time.perf_counter() - t1
        check = np.load(out, mmap_mode="r")
        assert check.shape == (args.rows, args.dim) and np.isfinite(check[-1000:]).all()
    resolved = resolve_backend(args.backend, decoder, torch.device("cpu"), args.precision)
    flop_per_row_step = mlp_pgd_flops_per_row_step([args.dim, *args.hidden, int(np.prod(args.image))])
    res = {
        "rows": args.rows,
        "dim": args.dim,
        "decoder": [args.dim, *args.hidden, list(args.image)],
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "seconds": round(elapsed, 2),
        "rows_per_second": round(args.rows / elapsed, 1),
        "gflops": round(flop_per_row_step * args.steps * args.rows / elapsed / 1e9, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_before_protect_mb": round(rss_before, 1),
        "gallery_write_seconds": round(t_write, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "torch": torch.__version__,
        "advface_fast": af.__version__,
        "backend": f"{args.backend} ({resolved.name})",
        "precision": args.precision,
    }
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if res["peak_rss_mb"] > 1536:
        print(f"FAIL: peak RSS {res['peak_rss_mb']} MB exceeds 1.5 GB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
