"""What the keyed defences cost in speed: ``protect`` with a key, and with a key and the rotation,
beside the public-seed default, in one run on the same gallery (the shipped 128-d shadow decoder,
CPU). The accuracy cost is in the threat suites' reports.

    python benchmarks/rotation_cost.py --json benchmarks/results/rotation_cost_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import numpy as np
import torch

import advface_fast as af
from advface_fast.errors import PublicRandomnessWarning


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8192, help="gallery rows (default 8192)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default 3)")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args()
    warnings.simplefilter("ignore", PublicRandomnessWarning)
    dec = af.load_default().shadow
    z = torch.nn.functional.normalize(torch.randn(args.rows, 128, generator=torch.Generator().manual_seed(0)), dim=1)
    key = b"benchmark-key-not-a-secret-000000"
    configs = {
        "public seed": {},
        "key": {"key": key},
        "key + rotation": {"key": key, "rotate": True},
    }
    af.protect(z[:256], dec, progress=False)  # warm-up
    raw: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):  # interleaved, so drift hits every configuration alike
        for name, kw in configs.items():
            t = time.perf_counter()
            af.protect(z, dec, progress=False, **kw)
            raw[name].append(time.perf_counter() - t)
    rate = {name: args.rows / float(np.median(v)) for name, v in raw.items()}
    res = {
        "command": "python " + " ".join(sys.argv),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": args.rows,
        "rows_per_s": rate,
        "ratio_to_public_seed": {name: rate[name] / rate["public seed"] for name in rate},
        "raw_seconds": raw,
    }
    for name in configs:
        print(f"{name:16s} {rate[name]:8.0f} rows/s  ({res['ratio_to_public_seed'][name]:.3f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
