"""Latency of the matcher's decisions on CPU: one probe at a time (a door, a login), against
galleries of 10k, 100k and 1M protected templates, held as an in-memory array (brute force), a
FAISS ``Flat`` index (exact) and a FAISS ``HNSW32`` index (approximate, efSearch 128).

What is timed, per probe, through :class:`advface_fast.match.Matcher`:

- ``transform``: the probe's part (unit scaling and the key's 128 x 128 rotation), the share of
  the cost the key's transform adds;
- ``verify``: transform + the claimed person's template + the decision;
- ``identify``: transform + the 1:N search (k = 1) + the decision.

Latency does not depend on what the templates are, so the galleries are random unit vectors
recorded as protected (protecting 1M templates takes ~25 min on these 2 cores; its throughput is
in ``million_rows.py``). Each figure is the median over ``--probes`` single-probe calls, after a
warm-up; build times are stated beside.

    python benchmarks/match_latency.py --json benchmarks/results/match_latency_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch
from machine import cpu_model

import advface_fast as af
from advface_fast import provenance
from advface_fast.keys import key_id
from advface_fast.match import DeploymentConfig, Matcher
from advface_fast.match.gallery import FaissGallery, ProtectedGallery

KEY = b"match-latency-benchmark-key-0000"  # fixed: the benchmark is reproducible, not a secret
DIM = 128
SETTINGS = {"eps": 0.08, "alpha": 0.016, "steps": 10, "start": "random", "renorm": True, "seed": 0}
SETTINGS |= {"rotate": True, "precision": "fp32"}


def _record(n: int) -> dict:
    prot = {"key": key_id(KEY), "decoder": "benchmark", "encoder": None, **SETTINGS}
    return provenance.new_record("protected", n, DIM, None, protection=provenance.protection_record(prot))


def _median_ms(fn, probes: np.ndarray, warmup: int = 5) -> float:
    for p in probes[:warmup]:
        fn(p)
    times = []
    for p in probes:
        t = time.perf_counter()
        fn(p)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import faiss

    from advface_fast.deploy.vector_index import build_index

    rng = np.random.default_rng(0)
    config = DeploymentConfig(0.5, 1e-3, SETTINGS, key_id(KEY), "benchmark", None)
    rows = []
    for n in args.sizes:
        z = rng.standard_normal((n, DIM), dtype=np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        ids = np.arange(n, dtype=np.int64)
        probes = rng.standard_normal((args.probes, DIM), dtype=np.float32)
        claims = rng.integers(0, n, args.probes)
        kinds = {"array": lambda z=z, ids=ids, n=n: ProtectedGallery(z, ids, _record(n), "array")}
        for factory in ("Flat", "HNSW32"):
            kinds[f"faiss-{factory}"] = lambda f=factory, z=z, ids=ids, n=n: FaissGallery(
                build_index(z, ids, f), _record(n), f
            )
        for kind, make in kinds.items():
            t = time.perf_counter()
            gallery = make()
            build_s = time.perf_counter() - t
            if kind == "faiss-HNSW32":
                faiss.ParameterSpace().set_index_parameter(gallery.index, "efSearch", 128)
            m = Matcher(gallery, config, KEY)
            it = iter(claims.tolist() * 2)
            row = {
                "gallery": n,
                "kind": kind,
                "build_s": build_s,
                "transform_ms": _median_ms(m.transform, probes),
                "verify_ms": _median_ms(lambda p, it=it, m=m: m.verify(p, next(it)), probes),
                "identify_ms": _median_ms(lambda p, m=m: m.identify(p), probes),
            }
            row["transform_share_identify"] = row["transform_ms"] / row["identify_ms"]
            rows.append(row)
            print(
                f"{n:>9,} {kind:13} build {build_s:7.2f} s  transform {row['transform_ms']:.3f} ms  "
                f"verify {row['verify_ms']:.3f} ms  identify {row['identify_ms']:.3f} ms "
                f"(transform {100 * row['transform_share_identify']:.1f}%)",
                flush=True,
            )
            del gallery, m
    result = {
        "command": f"cd {os.getcwd()} && python " + shlex.join(sys.argv),
        "machine": f"{cpu_model()}, {torch.get_num_threads()} torch threads, {faiss.omp_get_max_threads()} FAISS "
        f"threads",
        "versions": {
            "advface_fast": af.__version__,
            "numpy": np.__version__,
            "faiss": faiss.__version__,
            "python": platform.python_version(),
        },
        "probes": args.probes,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
