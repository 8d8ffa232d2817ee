"""What a key mode costs in 1:N search: a gallery of N records (float32 unit rows), a batch of
probes, top-1 by cosine, with the system-wide key against S shard keys, side by side in one run
(exact search, torch on the CPU; the key's probe rotation included). The system-wide key's search
is one product with the rotated probes; shard keys search the records packed by shard as the
matcher holds them (:class:`~advface_fast.keymodes.ShardedGallery`).

The system-wide key rotates each probe once and scores ``N D``; S shard keys rotate each probe S
times (``S D^2`` more, and read the ``S D^2`` matrices) and score each shard with its own
rotation, all shards in two batched products (the packed blocks' padding costs a little more).
Per-identity keys would rotate
each probe once per enrolled identity: at N identities ``N D^2``, D times the search, so that mode
offers 1:1 verification only (its cost is computed here, not run).

    python benchmarks/key_modes_cost.py --out benchmarks/results/key_modes_cost_cpu.json
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from machine import run_header

from advface_fast.keymodes import ShardedGallery, ShardKeys, SystemKey

KEY = b"key-modes-cost-benchmark-0000000"  # fixed: reproducible, not a secret


def _plain_search(records: torch.Tensor, q: torch.Tensor, probes: torch.Tensor, k: int) -> tuple:
    """Top-``k`` of ``probes`` rotated by the one key ``q`` against every record."""
    return (records @ (probes @ q.T).T).topk(k, dim=0)


def best_of(fn, repeats: int) -> float:
    fn()  # warm: rotations drawn and cached, allocator warmed
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--shards", type=int, nargs="+", default=[16, 256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.normalize(torch.randn(args.n, args.dim, generator=g), dim=1)
    ids = np.arange(args.n, dtype=np.int64)
    rows = []
    configs = [("system-wide key", SystemKey(KEY))] + [(f"{s} shard keys", ShardKeys(KEY, s)) for s in args.shards]
    for name, mode in configs:
        t = time.perf_counter()
        groups = mode.groups(ids)
        order = np.argsort(groups, kind="stable")
        records = mode.apply(clean[torch.from_numpy(order)], groups[order])
        if isinstance(mode, SystemKey):  # one rotation: one product with the rotated probes
            q = mode.rotation(0, args.dim, torch.float32)
            search = partial(_plain_search, records, q)
        else:
            search = ShardedGallery(mode, records, groups[order]).search  # what the matcher holds
            del records
        setup = time.perf_counter() - t
        for b in args.batch:
            probes = torch.nn.functional.normalize(clean[:b] + 0.05 * torch.randn(b, args.dim, generator=g), dim=1)
            sec = best_of(lambda p=probes, s=search: s(p, 1), args.repeats)
            rows.append({"mode": name, "batch": b, "seconds": sec, "ms_per_probe": 1e3 * sec / b, "setup_s": setup})
        done = rows[-len(args.batch) :]
        print(", ".join(f"{r['mode']} batch {r['batch']}: {r['ms_per_probe']:.2f} ms/probe" for r in done), flush=True)
    base = {r["batch"]: r["seconds"] for r in rows if r["mode"] == "system-wide key"}
    for r in rows:
        r["vs_system_key"] = r["seconds"] / base[r["batch"]]
    result = {
        **run_header(numpy=np.__version__),
        "n": args.n,
        "dim": args.dim,
        "rows": rows,
        "per_identity_keys_1n_multiply_adds_per_probe": args.n * args.dim**2,
        "system_key_1n_multiply_adds_per_probe": args.n * args.dim + args.dim**2,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['mode']:16} batch {r['batch']:3}: {r['ms_per_probe']:8.2f} ms/probe, {r['vs_system_key']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
