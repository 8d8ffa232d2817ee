"""Templates that arrive one at a time: ``protect()`` per template, a held ``Protector`` per
template, and one batched call, side by side in one run (the shipped 128-d shadow decoder,
default settings, CPU, one thread unless ``--threads``).

Each single-template call streams every decoder weight through the loop (10 steps, forward and
backward) for one row; a batch reads them once for all its rows. The per-call breakdown profiles
where a one-shot ``protect()`` spends what a held ``Protector`` does not.

    python benchmarks/single_template.py --json benchmarks/results/single_template_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time

import numpy as np
import torch

import advface_fast as af


def _per_call_ms(fn, calls: int) -> list[float]:
    out = []
    for i in range(calls):
        t = time.perf_counter()
        fn(i)
        out.append(1e3 * (time.perf_counter() - t))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=50, help="single-template calls per way (default 50)")
    p.add_argument("--batch", type=int, default=64, help="rows of the batched call (default 64)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    key = b"benchmark-key-not-a-secret-000000"
    dec = af.load_default().shadow
    z = torch.nn.functional.normalize(torch.randn(max(args.calls, args.batch), 128), dim=1)
    kw = {"key": key, "progress": False}
    af.protect(z[:1], dec, **kw)  # warm-up (allocator, kernels)
    held = af.Protector(dec, **kw)
    held(z[:1], row_ids=np.array([0]))

    one_shot = _per_call_ms(lambda i: af.protect(z[i : i + 1], dec, row_ids=np.array([i]), **kw), args.calls)
    held_ms = _per_call_ms(lambda i: held(z[i : i + 1], row_ids=np.array([i])), args.calls)
    batched = _per_call_ms(lambda i: held(z[: args.batch]), 5)
    copy_ms = _per_call_ms(lambda i: copy.deepcopy(dec).eval().requires_grad_(False), 20)

    med = {k: float(np.median(v)) for k, v in {"one_shot": one_shot, "held": held_ms, "batched": batched}.items()}
    res = {
        "command": "python " + " ".join(sys.argv),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": args.threads,
        "ms_per_template": {
            "protect() per template": med["one_shot"],
            "held Protector per template": med["held"],
            f"batch of {args.batch}, per template": med["batched"] / args.batch,
        },
        "decoder_copy_ms": float(np.median(copy_ms)),
        "raw_ms": {"one_shot": one_shot, "held": held_ms, "batched_call": batched, "decoder_copy": copy_ms},
    }
    for k, v in res["ms_per_template"].items():
        print(f"{k:32s} {v:8.2f} ms")
    print(f"{'decoder copy (one-shot only)':32s} {res['decoder_copy_ms']:8.2f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
