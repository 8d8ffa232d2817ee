"""A/B of the CPU engine's call time between two source trees, alternating processes.

Single benchmark runs on these shared machines swing by +-20% between minutes, so a change is
judged by alternating the two trees' processes several times and keeping each case's best time.
``--old`` is a checkout of the other revision (``git worktree add /tmp/old <rev>``, with the built
``advface_fast/_C*.so`` copied in and ``advface_fast/kernels`` linked to ``../kernels``); the new
side is whatever ``import advface_fast`` finds from this interpreter.

    python benchmarks/cpu_call_ab.py --old /tmp/old --rounds 6 --out results/engines-registry/call_ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

SIZES = {"small": (128, [256], (3, 16, 16)), "medium": (512, [1024, 2048], (3, 32, 32))}  # test_bench_cpu's
CASES = [
    ("small", 1, "fp32"),
    ("small", 64, "fp32"),
    ("small", 64, "bf16"),
    ("medium", 64, "bf16"),
    ("medium", 1, "bf16"),
]
CALLS = {("small", 1): 300, ("small", 64): 60, ("medium", 64): 6, ("medium", 1): 20}


def measure() -> dict[str, float]:
    """Seconds per ``Protector`` call (best of 5 repeats) of the eager engine for each case."""
    import torch

    import advface_fast as af

    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    out = {}
    for size, batch, precision in CASES:
        dim, hidden, shape = SIZES[size]
        torch.manual_seed(0)
        dec = af.MLPDecoder(dim, hidden, shape)
        z = torch.nn.functional.normalize(torch.randn(batch, dim), dim=1)
        prot = af.Protector(dec, backend="mlp", precision=precision, batch_size=batch, progress=False, seed=1)
        for _ in range(3):
            prot(z)
        n, best = CALLS[(size, batch)], float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                prot(z)
            best = min(best, (time.perf_counter() - t) / n)
        out[f"{size} batch {batch} {precision}"] = best
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="source tree of the other revision")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", default=None, help="JSON file for the raw times")
    args = p.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as cwd:  # not the checkout: '' on sys.path would shadow --old
        for _ in range(args.rounds):
            for side in ("old", "new"):
                env = dict(os.environ, PYTHONPATH=os.path.abspath(args.old)) if side == "old" else dict(os.environ)
                if side == "new":
                    env.pop("PYTHONPATH", None)
                res = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--measure"], env=env, cwd=cwd, capture_output=True,
                    text=True, check=True,
                )  # fmt: skip
                runs[side].append(json.loads(res.stdout))
    print(f"{'case':24} {'old ms':>9} {'new ms':>9} {'new/old':>8}   (best of {args.rounds} processes)")
    for case in runs["old"][0]:
        old, new = (min(r[case] for r in runs[s]) for s in ("old", "new"))
        print(f"{case:24} {old * 1e3:9.3f} {new * 1e3:9.3f} {new / old:8.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cases": CASES, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        print(json.dumps(measure()))
    else:
        main()
