"""An insider with known pairs against each key mode, on real faces, at the template level.

The gallery: LFW's enrolled files (``pairs.txt``, SFace templates; the victims) and the insider's
accomplices (CelebA-subset photos, enrolled under made-up names), each record its template rotated
under the key mode (no AdvFace: the modes on their own, the attacker's best case). Enrolment ids
are drawn at random, so the insider cannot choose its shards.

The attacker (what it knows): the stolen database with every record's group (a shard must be known
to search it), ``P`` known pairs (its accomplices' clean templates and their records), and clean
templates of other faces of its own (the rest of the CelebA subset: the prior). Not the key. For
each victim it uses the pairs of the victim's group: with ``n >= D`` Procrustes, else the
conditional mean under the prior (:func:`~advface_fast.eval.threat.known_pairs_prior.estimate_records`;
``n = 0``: the prior mean).

The judge: SFace itself at the clean system's threshold for FAR 1e-3 (every cross-identity pair of
enrolled and probe files an impostor): an estimate counts as identified when it is accepted against
the victim's other photos; the wrong-person floor is the same against other people's photos (an
average face is accepted for many people). Rank-1: the estimate's best-scoring probe photo is the
victim's (of every probe file; the floor is about one in the number of probe identities). This is
template-level inference, an upper bound on what an image-level attacker would reach with the
same estimates.

    python benchmarks/insider_key_modes.py --out-dir benchmarks/results/insider-key-modes-lfw
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from faces_setup import recognition_data
from machine import run_header

from advface_fast.eval.faces import _operating_sets
from advface_fast.eval.faces_config import FacesEvalConfig
from advface_fast.eval.threat.key_recovery import moment_alignment
from advface_fast.eval.threat.known_pairs_prior import estimate_records
from advface_fast.eval.threat.procrustes import procrustes
from advface_fast.keymodes import IdentityKeys, KeyMode, ShardKeys, SystemKey
from advface_fast.metrics.operating_point import threshold_at_far

KEY = b"insider-key-modes-benchmark-0000"  # fixed: reproducible, not a secret
PAIRS = (0, 1, 4, 16, 64, 128, 256, 1000, 3000)


def modes(shards: list[int]) -> dict[str, KeyMode]:
    out: dict[str, KeyMode] = {"system-wide key": SystemKey(KEY)}
    out.update({f"{s} shard keys": ShardKeys(KEY, s) for s in shards})
    out["per-identity keys"] = IdentityKeys(KEY)
    return out


def attack(
    mode: KeyMode, victims: torch.Tensor, accomplices: torch.Tensor, own: torch.Tensor, n_pairs: int, seed: int
) -> torch.Tensor:
    """Estimates ``(V, D)`` of the victims' clean templates from their records under ``mode``."""
    rng = np.random.default_rng(seed)
    n_v = len(victims)
    ids = rng.integers(0, 2**62, n_v + n_pairs)  # drawn enrolment ids: the insider cannot pick its shards
    labels = [f"victim-{i}" for i in range(n_v)] + [f"accomplice-{i}" for i in range(n_pairs)]
    clean = torch.cat([victims, accomplices[:n_pairs]]).double()
    groups = mode.groups(ids, labels)
    records = mode.apply(clean, groups)
    dim = clean.shape[1]
    out = torch.empty(n_v, dim, dtype=torch.float64)
    acc_groups = groups[n_v:]
    for g in np.unique(groups[:n_v]):
        v = np.flatnonzero(groups[:n_v] == g)
        k = n_v + np.flatnonzero(acc_groups == g)
        y = records[torch.from_numpy(v)]
        if len(k) >= dim:
            q_hat = procrustes(clean[torch.from_numpy(k)], records[torch.from_numpy(k)])
            out[torch.from_numpy(v)] = y @ q_hat
        else:
            kt = torch.from_numpy(k)
            out[torch.from_numpy(v)] = estimate_records(clean[kt], records[kt], y, own)
    return out


def align(mode: KeyMode, victims: torch.Tensor, own: torch.Tensor, seed: int) -> torch.Tensor:
    """Estimates ``(V, D)`` with no pairs at all: each group's records aligned to the attacker's own
    templates by their covariance eigenvectors and third moments
    (:func:`~advface_fast.eval.threat.key_recovery.moment_alignment`); a group of one record, whose
    moments say nothing, gets the prior mean."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2**62, len(victims))
    groups = mode.groups(ids, [f"victim-{i}" for i in range(len(victims))])
    records = mode.apply(victims.double(), groups)
    out = own.double().mean(0).expand(len(victims), -1).clone()
    for g in np.unique(groups):
        v = torch.from_numpy(np.flatnonzero(groups == g))
        if len(v) > 1:
            out[v] = records[v] @ moment_alignment(own, records[v])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=list(PAIRS))
    ap.add_argument("--shards", type=int, nargs="+", default=[16, 256, 4096])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--plot-only", action="store_true", help="redraw curves.png from --out-dir's results.json")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads((Path(args.out_dir) / "results.json").read_text()), Path(args.out_dir) / "curves.png")
        return 0
    t0 = time.time()
    cfg, data, _ = recognition_data(FacesEvalConfig(), args.cache_dir)
    g, q, same, valid = _operating_sets(data)
    unit = torch.nn.functional.normalize
    victims, probes = unit(data.z_test[g].double(), dim=1), unit(data.z_test[q].double(), dim=1)
    celeba = unit(data.z_train[: len(data.z_train) // 2].double(), dim=1)  # the originals (then their flips)
    perm = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(len(celeba)))
    n_acc = min(max(args.pairs), len(celeba) // 2)
    accomplices, own = celeba[perm[:n_acc]], celeba[perm[n_acc:]]
    gen, imp = same & valid, ~same & valid
    clean_scores = (victims @ probes.T).numpy()
    thr = threshold_at_far(clean_scores[imp], 1e-3)
    rows = []
    pairs = [n for n in args.pairs if n <= n_acc] + [None]  # None: no pairs, unpaired alignment instead
    runs = [(name, mode, n) for name, mode in modes(args.shards).items() for n in pairs]
    for name, mode, n in runs:
        if n is None:  # no pairs: unpaired alignment of each group to the attacker's own templates
            est = unit(align(mode, victims, own, cfg.seed), dim=1)
        else:
            est = unit(attack(mode, victims, accomplices, own, n, cfg.seed + n), dim=1)
        s = (est @ probes.T).numpy()
        best = np.where(valid, s, -np.inf).argmax(1)
        has_own = gen.any(1)
        row = {
            "mode": name,
            "attack": "moment alignment" if n is None else "known pairs",
            "pairs": 0 if n is None else n,
            "identity_inference": 100 * float((s[gen] > thr).mean()),
            "wrong_person": 100 * float((s[imp] > thr).mean()),
            "rank1": 100 * float(same[np.arange(len(best)), best][has_own].mean()),
            "mean_cosine_to_template": float((est * victims).sum(1).mean()),
        }
        rows.append(row)
        print(
            f"{name:18} {row['attack']:16} {row['pairs']:5} pairs: identified {row['identity_inference']:5.1f}% "
            f"(wrong person {row['wrong_person']:.2f}%), rank-1 {row['rank1']:5.1f}%, "
            f"cosine to the template {row['mean_cosine_to_template']:.3f}",
            flush=True,
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **run_header(),
        "protocol": cfg.pairs,
        "encoder": cfg.encoder,
        "victims": len(g),
        "probe_files": len(q),
        "accomplices_available": n_acc,
        "prior_templates": len(own),
        "threshold_far_1e-3": thr,
        "genuine_pairs": int(gen.sum()),
        "impostor_pairs": int(imp.sum()),
        "rows": rows,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "curves.png")
    print(f"wrote {out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


def plot(result: dict, path: Path) -> None:
    """``curves.png``: rank-1 identification (left) and acceptance at the clean threshold (right)
    against the known pairs, one curve per key mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    known = [r for r in result["rows"] if r.get("attack", "known pairs") == "known pairs"]
    names = list(dict.fromkeys(r["mode"] for r in known))
    for ax, key, label in (
        (axes[0], "rank1", "victims identified at rank 1 (%)"),
        (axes[1], "identity_inference", "estimates accepted as the victim at FAR 1e-3 (%)"),
    ):
        for i, name in enumerate(names):
            pts = [r for r in known if r["mode"] == name]
            ax.plot([max(r["pairs"], 0.5) for r in pts], [r[key] for r in pts], "-o", c=f"C{i}", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("known pairs (accomplices enrolled; 0 plotted at 0.5)")
        ax.set_ylabel(label)
    floor = max(r["wrong_person"] for r in known)
    axes[1].axhline(floor, c="grey", ls="--", lw=0.8, label=f"wrong-person floor (up to {floor:.1f}%)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"an insider's known pairs against key modes: {result['encoder']} on LFW, template level, judge E")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
