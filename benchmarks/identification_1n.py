"""1:N identification against a gallery of protected templates with up to 1,000,000 distractors.

The synthetic world of the shipped default models (its 128-d encoder E, its shadow decoder):
``--enrolled`` people are enrolled (variation 0 of each), each searched with a fresh probe
(variation 1: mated searches); ``--nonmated`` other people, never enrolled, are searched too
(non-mated searches); distractors are further people, one enrolled template each. The gallery
(enrolled + the first ``d`` distractors, for each ``d`` of ``--distractors``) is stored
unprotected, or protected with AdvFace (default settings, a secret key; distractors are
protected too, as in a real gallery). Probes are fresh, clean encoder features. Each gallery goes
into FAISS inner-product indexes over unit vectors (``Flat``: exact; ``HNSW32``, efSearch 128:
approximate), and we report

- rank-1: mated searches whose best match is the person's own enrolled template;
- TPIR at FPIR: the threshold that lets the given fraction of non-mated searches' best scores
  through (FPIR 1% and 0.1%: 100 and 10 of 10,000 non-mated searches stand behind them), and the
  mated searches whose best match is their own template with a score at or above it;
- index build and search times (all mated + non-mated searches, k = 1).

Features and protected galleries are cached in ``--cache-dir`` (protection resumes if killed).

    python benchmarks/identification_1n.py --json benchmarks/results/identification_1n_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model
from tqdm.auto import tqdm

import advface_fast as af

ENROLLED_ID0, NONMATED_ID0, DISTRACTOR_ID0 = 300_000, 500_000, 2_000_000
KEY = b"identification-benchmark-key-000"  # a fixed key: the benchmark is reproducible, not a secret


def _features(models, ids: np.ndarray, variation: int, path: Path, chunk: int = 2048) -> np.ndarray:
    """Encoder features ``(len(ids), 128)`` of one image per identity, cached at ``path``."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(str(path) + ".partial.npy", mode="w+", dtype=np.float32, shape=(len(ids), 128))
    enc = models.encoder.eval()
    with torch.no_grad():
        for a in tqdm(range(0, len(ids), chunk), desc=f"encode {path.stem}", unit="chunk"):
            idt = torch.from_numpy(ids[a : a + chunk])
            imgs = models.world.render(idt, torch.full_like(idt, variation))
            out[a : a + len(idt)] = enc(imgs).numpy()
    out.flush()
    del out
    os.replace(str(path) + ".partial.npy", path)
    return np.load(path, mmap_mode="r")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _index(faiss, kind: str, d: int):
    if kind == "Flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efSearch = 128
    return faiss.IndexIDMap2(hnsw)


def _evaluate(faiss, kind: str, gallery: np.ndarray, gids: np.ndarray, mated, mated_ids, nonmated) -> dict:
    index = _index(faiss, kind, gallery.shape[1])
    t = time.perf_counter()
    for a in range(0, len(gallery), 200_000):
        index.add_with_ids(_unit(gallery[a : a + 200_000]), gids[a : a + 200_000])
    build = time.perf_counter() - t
    t = time.perf_counter()
    s_m, i_m = index.search(mated, 1)
    s_n, _ = index.search(nonmated, 1)
    search = time.perf_counter() - t
    hit = i_m[:, 0] == mated_ids
    res = {
        "index": kind,
        "gallery": len(gallery),
        "build_s": build,
        "search_s": search,
        "searches": int(len(mated) + len(nonmated)),
        "rank1": float(hit.mean()),
    }
    for fpir in (0.01, 0.001):
        thr = float(np.quantile(s_n[:, 0], 1 - fpir, method="higher"))
        res[f"tpir_at_fpir_{fpir:g}"] = float((hit & (s_m[:, 0] >= thr)).mean())
        res[f"threshold_at_fpir_{fpir:g}"] = thr
        res[f"nonmated_behind_fpir_{fpir:g}"] = round(fpir * len(nonmated))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--enrolled", type=int, default=1000, help="people enrolled and searched (mated)")
    p.add_argument("--nonmated", type=int, default=10_000, help="people searched but never enrolled")
    p.add_argument("--distractors", default="0,10000,100000,1000000", help="gallery distractor counts")
    p.add_argument("--indexes", default="Flat,HNSW32", help="FAISS indexes to measure")
    p.add_argument("--cache-dir", default=os.environ.get("ADVFACE_CACHE", "/tmp/advface-1n"), help="feature cache")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch and FAISS threads")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    args = p.parse_args()
    faiss = af.optional.import_optional("faiss", "this benchmark")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    sizes = sorted(int(s) for s in args.distractors.split(","))
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    models = af.load_default()
    t0 = time.perf_counter()
    enrolled_ids = np.arange(ENROLLED_ID0, ENROLLED_ID0 + args.enrolled, dtype=np.int64)
    distractor_ids = np.arange(DISTRACTOR_ID0, DISTRACTOR_ID0 + sizes[-1], dtype=np.int64)
    gids = np.concatenate([enrolled_ids, distractor_ids])
    gallery = _features(models, gids, 0, cache / f"gallery_{args.enrolled}_{sizes[-1]}.npy")
    mated = _unit(_features(models, enrolled_ids, 1, cache / f"mated_{args.enrolled}.npy"))
    nonmated = _unit(
        _features(models, np.arange(NONMATED_ID0, NONMATED_ID0 + args.nonmated), 1, cache / f"non_{args.nonmated}.npy")
    )
    encode_s = time.perf_counter() - t0
    protected_path = cache / f"protected_{args.enrolled}_{sizes[-1]}.npy"
    t0 = time.perf_counter()
    if not protected_path.exists():
        af.protect(gallery, models.shadow, key=KEY, row_ids=gids, out=protected_path, batch_size=1024)
    protect_s = time.perf_counter() - t0
    protected = np.load(protected_path, mmap_mode="r")
    rows = []
    for d in sizes:
        n = args.enrolled + d
        for kind in args.indexes.split(","):
            for name, g in (("unprotected", gallery), ("advface", protected)):
                r = _evaluate(faiss, kind, g[:n], gids[:n], mated, enrolled_ids, nonmated)
                r.update(distractors=d, gallery_kind=name)
                print(
                    f"{kind:7} distractors={d:>8,} {name:12} rank-1 {100 * r['rank1']:5.1f}%  "
                    f"TPIR@FPIR1% {100 * r['tpir_at_fpir_0.01']:5.1f}%  "
                    f"TPIR@FPIR0.1% {100 * r['tpir_at_fpir_0.001']:5.1f}%  "
                    f"build {r['build_s']:.1f} s  search {r['search_s']:.2f} s",
                    flush=True,
                )
                rows.append(r)
    res = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": {"advface_fast": af.__version__, "torch": torch.__version__, "faiss": faiss.__version__},
        "settings": {"enrolled": args.enrolled, "nonmated": args.nonmated, "protection": "defaults, keyed"},
        "encode_s": encode_s,
        "protect_s": protect_s,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
