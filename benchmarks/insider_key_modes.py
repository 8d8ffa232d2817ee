"""An insider against each key mode, in two worlds, at the template level.

The gallery: the victims' enrolled templates (LFW's ``pairs.txt`` files with SFace, or held-out
synthetic people with the default E: ``--world``) and the insider's accomplices (CelebA-subset
photos, or synthetic people of the attacker's range, enrolled under made-up names), each record
its template rotated under the key mode (no AdvFace: the modes on their own, the attacker's best
case). Enrolment ids are drawn at random, so the insider cannot choose its shards.

The attacker holds the stolen database with every record's group (a shard must be known to search
it) and clean templates of other faces of its own (the prior); never the key. Its levers, one row
each:

- **known pairs**: ``P`` accomplices (clean template and record). Each victim is estimated from
  the pairs of its group: with ``n >= D`` Procrustes, else the conditional mean under the prior
  (:func:`~advface_fast.eval.threat.known_pairs_prior.estimate_records`; ``n = 0``: the prior mean).
- **a labelled public set sharing people** (100%, 50%, 10% of the victims): another photo of each
  shared person, paired by name with the person's record (a noisy pair); two-fold cross-fitted, so
  the harm measured is to people the set lacks. The attacker picks its estimator per group by how
  well it predicts held-out pairs. With ``--combined`` accomplices beside the set: the strongest
  attacker here, less the unpaired alignments (run on their own, below).
- **unpaired alignment** of each group's records to the attacker's own faces, or to an unlabelled
  public set sharing every person: moment alignment, Wasserstein-Procrustes, Gromov-Wasserstein
  (:mod:`advface_fast.eval.threat.wasserstein_procrustes`, :mod:`~advface_fast.eval.threat.gromov_wasserstein`);
  groups under 32 records are not aligned (the target's mean).
- **record multiplicity** (LFW, where half the enrolled files belong to people with several): the
  strongest attacker's estimates pooled over each person's records, whose labels the database
  shows (:mod:`advface_fast.eval.threat.record_multiplicity`). Folds and per-identity keys stay
  per record (each file its own label), so a person's other records' public photos can inform a
  group's rotation as one pair among its pairs.

The judge: E itself, at the clean system's thresholds for FAR 1e-3 and 1e-4 (every cross-identity
pair of enrolled and probe captures an impostor). Per row: rank-1 (the estimate's best-scoring probe
is the victim's), the success attack rate at FMR 0.1% and 0.01% (genuine comparisons accepted) and
the same against other people's photos (the wrong-person floor: an average face is accepted for
many people), TPIR at FPIR 1% (open-set 1:N), and ``D_sys`` (linkability of estimates to photos).
Template-level inference is an upper bound on what an image-level attacker reaches with the same
estimates; ``insider_key_modes_judged.py`` inverts them to faces for the independent judge.

    python benchmarks/insider_key_modes.py --out-dir benchmarks/results/insider-key-modes-lfw
    python benchmarks/insider_key_modes.py --world synthetic --out-dir benchmarks/results/insider-key-modes-synthetic
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from faces_setup import recognition_data
from machine import run_header

from advface_fast.eval.faces import _operating_sets
from advface_fast.eval.faces_config import FacesEvalConfig
from advface_fast.eval.faces_data import FacesData
from advface_fast.eval.threat.gromov_wasserstein import gromov_wasserstein
from advface_fast.eval.threat.key_recovery import moment_alignment
from advface_fast.eval.threat.known_pairs_prior import estimate_records
from advface_fast.eval.threat.procrustes import procrustes
from advface_fast.eval.threat.record_multiplicity import POOLINGS, pool_by_person
from advface_fast.eval.threat.wasserstein_procrustes import wasserstein_procrustes
from advface_fast.eval.unlinkability import linkability
from advface_fast.keymodes import IdentityKeys, KeyMode, ShardKeys, SystemKey
from advface_fast.metrics.operating_point import threshold_at_far

KEY = b"insider-key-modes-benchmark-0000"  # fixed: reproducible, not a secret
PAIRS = (0, 1, 4, 16, 64, 128, 256, 1000, 3000)
SYNTHETIC_PAIRS = (0, 1, 4, 16, 64, 128, 1000, 10000)


@dataclass
class World:
    """What a run attacks and judges with: unit templates (float64) of the victims' enrolled
    captures ``(V, D)`` and of every probe capture ``(P, D)``, ``same``/``valid`` ``(V, P)``
    masks, the accomplices' and the prior's templates, and each victim's public photo ``(V, D)``
    (NaN rows: none)."""

    victims: torch.Tensor
    probes: torch.Tensor
    same: np.ndarray
    valid: np.ndarray
    accomplices: torch.Tensor
    own: torch.Tensor
    public: torch.Tensor
    seed: int
    protocol: str
    encoder: str
    person: np.ndarray | None = None  # (V,) each victim record's person; None: one record each


def lfw_world(args: argparse.Namespace) -> World:
    """LFW's ``pairs.txt`` files with SFace (:func:`faces_world`)."""
    cfg, data, _ = recognition_data(FacesEvalConfig(), args.cache_dir)
    return faces_world(cfg, data, max([*args.pairs, args.combined]))


def faces_world(cfg: FacesEvalConfig, data: FacesData, accomplices: int) -> World:
    """A real-faces protocol's world: the enrolled files are the victims, the probe files the
    judge's photos, each victim's public photo its first other photo; up to ``accomplices`` (at
    most half the training photos) and the prior from the training set (the CelebA subset)."""
    g, q, same, valid = _operating_sets(data)
    person = np.unique(np.asarray(data.protocol.person)[g], return_inverse=True)[1]
    unit = torch.nn.functional.normalize
    victims, probes = unit(data.z_test[g].double(), dim=1), unit(data.z_test[q].double(), dim=1)
    celeba = unit(data.z_train[: len(data.z_train) // 2].double(), dim=1)  # the originals (then their flips)
    perm = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(len(celeba)))
    n_acc = min(accomplices, len(celeba) // 2)
    gen = same & valid
    first = np.where(gen.any(1), gen.argmax(1), -1)
    public = torch.full_like(victims, float("nan"))
    public[torch.from_numpy(np.flatnonzero(first >= 0))] = probes[torch.from_numpy(first[first >= 0])]
    return World(
        victims, probes, same, valid, celeba[perm[:n_acc]], celeba[perm[n_acc:]], public, cfg.seed, cfg.pairs,
        cfg.encoder, person,
    )  # fmt: skip


def synthetic_world(args: argparse.Namespace) -> World:
    """The shipped default models' synthetic faces: ``--victims`` held-out people (capture 0
    enrolled, capture 1 the judge's probe, capture 2 their public photo), accomplices and a prior
    of 5,000 from the attacker's identity range (captures 10 and 11), embedded by the default E."""
    from advface_fast.data.world import IDS
    from advface_fast.encoders.base import TorchEncoder
    from advface_fast.encoders.embed import embed
    from advface_fast.models.defaults import load_default

    m = load_default()
    enc = TorchEncoder(m.encoder)
    unit = torch.nn.functional.normalize

    def templates(first_id: int, n: int, capture: int) -> torch.Tensor:
        ids = torch.arange(first_id, first_id + n)
        return unit(embed(enc, m.world.render(ids, torch.full_like(ids, capture)), flip=False).double(), dim=1)

    n_v, n_acc = args.victims, max([*args.pairs, args.combined])
    victims, probes = templates(IDS["heldout"], n_v, 0), templates(IDS["heldout"], n_v, 1)
    same = np.eye(n_v, dtype=bool)
    return World(
        victims, probes, same, np.ones_like(same), templates(IDS["attacker"], n_acc, 10),
        templates(IDS["attacker"] + n_acc, 5000, 11), templates(IDS["heldout"], n_v, 2), 0,
        "synthetic faces (held-out identities)", "default E",
    )  # fmt: skip


def modes(shards: list[int]) -> dict[str, KeyMode]:
    out: dict[str, KeyMode] = {"system-wide key": SystemKey(KEY)}
    out.update({f"{s} shard keys": ShardKeys(KEY, s) for s in shards})
    out["per-identity keys"] = IdentityKeys(KEY)
    return out


def estimate_in_groups(
    groups: np.ndarray,
    records: torch.Tensor,
    pair_clean: torch.Tensor,
    pair_records: torch.Tensor,
    pair_groups: np.ndarray,
    own: torch.Tensor,
    noisy: np.ndarray | None = None,
) -> torch.Tensor:
    """Estimates ``(V, D)`` of the clean templates behind ``records`` ``(V, D)`` in ``groups``,
    each group from the pairs of its own group only.

    Exact pairs (a template and its own record; ``noisy`` None): :func:`_exact_estimate`. With
    ``noisy`` pairs (mask over the pairs: another photo of the person and the record), the
    attacker's own model selection: of Procrustes on every pair, the conditional mean on every
    pair and the exact-pair estimate on the exact ones alone, whichever predicts a fifth of the
    group's pairs held out best (at least 8 pairs; else the exact estimate, or with no exact pair
    the conditional mean on all)."""
    out = torch.empty(len(records), records.shape[1], dtype=torch.float64)
    for g in np.unique(groups):
        v = torch.from_numpy(np.flatnonzero(groups == g))
        k = np.flatnonzero(pair_groups == g)
        a, ya = pair_clean[torch.from_numpy(k)], pair_records[torch.from_numpy(k)]
        if noisy is None:
            out[v] = _exact_estimate(a, ya, records[v], own)
            continue
        exact = torch.from_numpy(~noisy[k])
        candidates = [
            lambda a, ya, ex, y: y @ procrustes(a, ya),
            lambda a, ya, ex, y: estimate_records(a, ya, y, own),
            lambda a, ya, ex, y: _exact_estimate(a[ex], ya[ex], y, own),
        ]
        if len(k) >= 8:
            held = torch.arange(len(k)) % 5 == 0

            scores = [_held_out_cosine(c, a, ya, exact, held) for c in candidates]
            best = candidates[int(np.argmax(scores))]
        else:
            best = candidates[2] if bool(exact.any()) else candidates[1]
        out[v] = best(a, ya, exact, records[v])
    return out


def _held_out_cosine(
    estimator: Callable, a: torch.Tensor, ya: torch.Tensor, exact: torch.Tensor, held: torch.Tensor
) -> float:
    """Mean cosine of ``estimator``'s estimates of the ``held`` pairs' records, fitted on the
    others, to the held pairs' clean side."""
    e = estimator(a[~held], ya[~held], exact[~held], ya[held])
    return float(torch.nn.functional.cosine_similarity(e, a[held], dim=1).mean())


def _exact_estimate(a: torch.Tensor, ya: torch.Tensor, y: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """From exact pairs ``(a, ya)``: with ``n >= D`` Procrustes, else the conditional mean under the
    prior of ``own`` (``n = 0``: the prior mean)."""
    if len(a) >= y.shape[1]:
        return y @ procrustes(a, ya)
    return estimate_records(a, ya, y, own)


def enrol(
    mode: KeyMode, victims: torch.Tensor, accomplices: torch.Tensor, rng: np.random.Generator
) -> tuple[np.ndarray, torch.Tensor]:
    """The stolen database under ``mode``: the victims ``(V, D)`` then the accomplices ``(P, D)``
    enrolled at ids drawn from ``rng`` (the insider cannot pick its shards). Returns their groups
    ``(V + P,)`` and records ``(V + P, D)`` float64; records in a group without a victim are left
    zero (no estimate reads them: each group is attacked with its own pairs only), which saves
    drawing their groups' matrices."""
    n_v, clean = len(victims), torch.cat([victims, accomplices]).double()
    ids = rng.integers(0, 2**62, len(clean))
    labels = [f"victim-{i}" for i in range(n_v)] + [f"accomplice-{i}" for i in range(len(accomplices))]
    groups = mode.groups(ids, labels)
    keep = torch.from_numpy(np.flatnonzero(np.isin(groups, groups[:n_v])))
    records = torch.zeros_like(clean)
    records[keep] = mode.apply(clean[keep], groups[keep.numpy()])
    return groups, records


def attack(
    mode: KeyMode, victims: torch.Tensor, accomplices: torch.Tensor, own: torch.Tensor, n_pairs: int, seed: int
) -> torch.Tensor:
    """Estimates ``(V, D)`` of the victims' clean templates from their records under ``mode`` and
    ``n_pairs`` accomplices' (clean template, record) pairs."""
    n_v, acc = len(victims), accomplices[:n_pairs].double()
    groups, records = enrol(mode, victims, acc, np.random.default_rng(seed))
    return estimate_in_groups(groups[:n_v], records[:n_v], acc, records[n_v:], groups[n_v:], own)


def public_labelled(
    mode: KeyMode,
    victims: torch.Tensor,
    public: torch.Tensor,
    fraction: float,
    own: torch.Tensor,
    seed: int,
    accomplices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Estimates ``(V, D)`` from a labelled public photo set that shares ``fraction`` of the
    victims: each shared person's public template (another photo; NaN rows in ``public`` for
    victims with none) and the record stored under the person's name make a noisy pair. Two-fold
    cross-fitting: a victim is estimated from the pairs of the other half only, so no estimate
    uses the victim's own public photo (the harm measured is to the people the set lacks).
    ``accomplices`` ``(P, D)``: the insider's enrolments too, exact pairs beside the noisy ones."""
    rng = np.random.default_rng(seed)
    n_v = len(victims)
    acc = accomplices.double() if accomplices is not None else victims.new_zeros(0, victims.shape[1])
    groups, records = enrol(mode, victims, acc, rng)
    has = ~torch.isnan(public).any(1).numpy()
    shared = has & (rng.random(n_v) < fraction)
    fold = rng.integers(0, 2, n_v)
    clean_side = torch.cat([public.double(), acc])  # a pair's clean side: the public photo, or the accomplice
    out = torch.empty(n_v, victims.shape[1], dtype=torch.float64)
    for f in (0, 1):
        v = np.flatnonzero(fold == f)
        k = np.concatenate([np.flatnonzero(shared & (fold != f)), n_v + np.arange(len(acc))])
        kt = torch.from_numpy(k)
        out[torch.from_numpy(v)] = estimate_in_groups(
            groups[v], records[torch.from_numpy(v)], clean_side[kt], records[kt], groups[k], own, noisy=k < n_v
        )
    return out


ALIGNERS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "moment alignment": lambda target, y, seed: moment_alignment(target, y),
    "Wasserstein-Procrustes": lambda target, y, seed: wasserstein_procrustes(
        target, y, inits=[moment_alignment(target, y)], restarts=2, iters=15, batch=2048, seed=seed
    ),
    "Gromov-Wasserstein": lambda target, y, seed: gromov_wasserstein(
        target, y, points=1000, refine_iters=15, seed=seed
    ),
}
MIN_GROUP = 32  # fewer records than this: too little shape to align, the estimate is the target's mean


def align(mode: KeyMode, victims: torch.Tensor, target: torch.Tensor, method: str, seed: int) -> torch.Tensor:
    """Estimates ``(V, D)`` with no pairs at all: each group's records aligned to the attacker's
    ``target`` templates (its own faces, or an unlabelled public set) by ``method`` of
    :data:`ALIGNERS`; a group of fewer than :data:`MIN_GROUP` records gets the target's mean."""
    groups, records = enrol(mode, victims, victims.new_zeros(0, victims.shape[1]), np.random.default_rng(seed))
    out = target.double().mean(0).expand(len(victims), -1).clone()
    for g in np.unique(groups):
        v = torch.from_numpy(np.flatnonzero(groups == g))
        if len(v) >= MIN_GROUP:
            out[v] = records[v] @ ALIGNERS[method](target, records[v], seed)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", choices=["lfw", "synthetic"], default="lfw")
    ap.add_argument(
        "--pairs", type=int, nargs="+", default=None, help=f"default {PAIRS} (synthetic: {SYNTHETIC_PAIRS})"
    )
    ap.add_argument("--shards", type=int, nargs="+", help="default 16 256 4096 (synthetic: and 16384)")
    ap.add_argument("--public-shared", type=float, nargs="*", default=[1.0, 0.5, 0.1])
    ap.add_argument("--combined", type=int, default=1000, help="accomplices beside the public set (0: none)")
    ap.add_argument("--aligners", nargs="*", default=list(ALIGNERS), choices=list(ALIGNERS))
    ap.add_argument("--victims", type=int, default=5000, help="synthetic world: held-out people enrolled")
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--plot-only", action="store_true", help="redraw curves.png from --out-dir's results.json")
    args = ap.parse_args()
    synthetic = args.world == "synthetic"
    args.pairs = args.pairs or list(SYNTHETIC_PAIRS if synthetic else PAIRS)
    args.shards = args.shards or ([16, 256, 4096, 16384] if synthetic else [16, 256, 4096])
    if args.plot_only:
        plot(json.loads((Path(args.out_dir) / "results.json").read_text()), Path(args.out_dir) / "curves.png")
        return 0
    t0 = time.time()
    w = (synthetic_world if args.world == "synthetic" else lfw_world)(args)
    victims, probes, same, valid, accomplices, own = w.victims, w.probes, w.same, w.valid, w.accomplices, w.own
    public, seed, n_acc = w.public, w.seed, len(w.accomplices)
    unit = torch.nn.functional.normalize
    gen, imp = same & valid, ~same & valid
    clean_scores = (victims @ probes.T).numpy()
    thr = threshold_at_far(clean_scores[imp], 1e-3)
    thr4 = threshold_at_far(clean_scores[imp], 1e-4)
    link_pairs = _link_pairs(gen, imp, seed)

    def measure(est: torch.Tensor) -> dict:
        return metrics(unit(est, dim=1), victims, probes, same, valid, thr, thr4, link_pairs)

    rows = []
    pairs = [n for n in args.pairs if n <= n_acc]
    runs: list[tuple[str, str, int, Callable[[], torch.Tensor]]] = []
    for name, mode in modes(args.shards).items():
        known = partial(attack, mode, victims, accomplices, own)
        runs += [(name, "known pairs", n, partial(known, n, seed + n)) for n in pairs]
        runs += [
            (name, f"public set, labelled, {round(100 * f)}% shared", 0,
             partial(public_labelled, mode, victims, public, f, own, seed + 1))
            for f in args.public_shared
        ]  # fmt: skip
        if args.combined:  # the strongest attacker: accomplices and a public set sharing every person
            both = partial(public_labelled, mode, victims, public, 1.0, own, seed + 2, accomplices[: args.combined])
            runs.append((name, "accomplices + public set, labelled, 100% shared", args.combined, both))
            if w.person is not None:  # record multiplicity: pool each person's records' estimates
                runs += [
                    (name, f"accomplices + public set, labelled, 100% shared, pooled ({how})", args.combined,
                     partial(_pooled, both, w.person, own.mean(0), how))
                    for how in POOLINGS
                ]  # fmt: skip
        for method in args.aligners:
            runs.append((name, f"{method} to own faces", 0, partial(align, mode, victims, own, method, seed)))
            runs.append(
                (name, f"{method} to a public set, 100% shared, unlabelled", 0,
                 partial(align, mode, victims, probes, method, seed))
            )  # fmt: skip
    for name, attack_name, n, run in runs:
        t = time.time()
        row = {"mode": name, "attack": attack_name, "pairs": n, **measure(run()), "seconds": time.time() - t}
        rows.append(row)
        print(
            f"{name:18} {attack_name:50} {n:5} pairs: rank-1 {row['rank1']:5.1f}%, SAR@1e-3 "
            f"{row['identity_inference']:5.1f}% (wrong person {row['wrong_person']:.2f}%), SAR@1e-4 "
            f"{row['sar_fmr_1e-4']:5.1f}%, TPIR@FPIR1% {row['tpir_fpir_1e-2']:5.1f}%, D_sys {row['d_sys']:.3f}, "
            f"cosine {row['mean_cosine_to_template']:.3f} ({row['seconds']:.0f} s)",
            flush=True,
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **run_header(),
        "world": args.world,
        "protocol": w.protocol,
        "encoder": w.encoder,
        "victims": len(victims),
        "probe_files": len(probes),
        "accomplices_available": n_acc,
        "prior_templates": len(own),
        "people": None if w.person is None else len(np.unique(w.person)),
        "threshold_far_1e-3": thr,
        "threshold_far_1e-4": thr4,
        "d_sys_floor": rows[0]["d_sys_floor"] if rows else None,
        "genuine_pairs": int(gen.sum()),
        "impostor_pairs": int(imp.sum()),
        "rows": rows,
        "seconds": time.time() - t0,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "curves.png")
    print(f"wrote {out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


def _pooled(estimate: Callable[[], torch.Tensor], person: np.ndarray, prior_mean: torch.Tensor, how: str):
    return pool_by_person(estimate(), person, prior_mean, how)


def _link_pairs(gen: np.ndarray, imp: np.ndarray, seed: int, per_mated: int = 4) -> tuple[np.ndarray, ...]:
    """(estimate row, probe row, mated) comparisons for ``D_sys``: every genuine pair, and
    ``per_mated`` random impostor pairs per genuine one."""
    ga, gb = np.nonzero(gen)
    ia, ib = np.nonzero(imp)
    pick = np.random.default_rng(seed).choice(len(ia), min(len(ia), per_mated * len(ga)), replace=False)
    a, b = np.concatenate([ga, ia[pick]]), np.concatenate([gb, ib[pick]])
    return a, b, np.concatenate([np.ones(len(ga), bool), np.zeros(len(pick), bool)])


def metrics(
    est: torch.Tensor,
    victims: torch.Tensor,
    probes: torch.Tensor,
    same: np.ndarray,
    valid: np.ndarray,
    thr: float,
    thr4: float,
    link_pairs: tuple[np.ndarray, ...],
) -> dict:
    """What an estimate ``(V, D)`` (unit rows) of the victims' templates gives the attacker, judged
    by E against the probe photos ``(P, D)`` (``same``/``valid``: ``(V, P)`` masks):

    - ``identity_inference`` / ``sar_fmr_1e-4``: the success attack rate at FMR 0.1% / 0.01% (the
      clean system's thresholds ``thr`` / ``thr4``): genuine comparisons of an estimate with the
      victim's other photos that are accepted, %; ``wrong_person``: the same against other
      people's photos at ``thr``.
    - ``rank1``: the estimate's best-scoring photo is the victim's, % of victims with a photo.
    - ``tpir_fpir_1e-2``: open-set 1:N identification: a victim is found when its photo ranks
      first and scores above the threshold that 1% of non-mated searches (each estimate against
      everyone else's photos) exceed.
    - ``d_sys``: linkability of estimates to photos (Gomez-Barrero et al.), genuine against
      impostor comparisons, with the estimator's floor ``d_sys_floor``.
    """
    s = (est @ probes.T).numpy()
    gen, imp = same & valid, ~same & valid
    has_own = gen.any(1)
    best = np.where(valid, s, -np.inf).argmax(1)
    top = np.where(valid, s, -np.inf).max(1)
    non_mated_top = np.where(imp, s, -np.inf).max(1)
    tau = float(np.quantile(non_mated_top, 0.99))
    found = same[np.arange(len(best)), best] & (top > tau)
    link = linkability(est, probes, *link_pairs)
    return {
        "identity_inference": 100 * float((s[gen] > thr).mean()),
        "sar_fmr_1e-4": 100 * float((s[gen] > thr4).mean()),
        "wrong_person": 100 * float((s[imp] > thr).mean()),
        "rank1": 100 * float(same[np.arange(len(best)), best][has_own].mean()),
        "tpir_fpir_1e-2": 100 * float(found[has_own].mean()),
        "d_sys": link["d_sys"],
        "d_sys_floor": link["d_sys_floor"],
        "mean_cosine_to_template": float((est * victims).sum(1).mean()),
    }


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
    where = "synthetic faces" if result.get("world") == "synthetic" else "LFW"
    fig.suptitle(f"an insider's known pairs against key modes: {result['encoder']} on {where}, template level, judge E")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
