"""The end-to-end demo on the synthetic-face world with the shipped default models (~1 min on CPU).

A face recognition system (the default encoder) has enrolled 500 people it never saw in training
(identities 300000+), one template each. An attacker who stole the templates owns a decoder of
another architecture than the defender's shadow decoder, trained on identities the defender never
saw. The demo protects the templates with AdvFace and reports, unprotected vs protected:

- verification accuracy (10-fold) of stored templates against fresh probe images of the same and
  of other people, i.e. what protection costs the recognition system;
- how often the attacker's reconstruction is accepted as the right person (its embedding matches
  that person's probe at the system's verification threshold) and the SSIM of the
  reconstructions, i.e. what protection buys;
- throughput; and writes a picture (original | attack on the stored template | attack on the
  protected template).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.world import IDS
from ..encoders.base import TorchEncoder
from ..encoders.embed import embed
from ..io.png import image_grid, write_png
from ..metrics import genuine_impostor_pairs, pair_distances, ssim, verification_accuracy
from ..metrics.operating_point import cross_identity_scores, operating_point, threshold_at_far
from ..models.defaults import load_default
from ..protector import protect
from ..settings import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_STEPS

# The library defaults (advface_fast.settings); the paper's shadow start is shown beside them.
EPS, ALPHA, STEPS = DEFAULT_EPS, DEFAULT_ALPHA, DEFAULT_STEPS
STARTS = ("random", "shadow")


def run_demo(
    out_dir: str | Path = "advface_demo_out",
    *,
    users: int = 500,
    eps: float = EPS,
    alpha: float = ALPHA,
    steps: int = STEPS,
) -> dict[str, dict[str, float]]:
    """Run the demo, print a table, write ``out_dir/demo_grid.png``; returns the table
    ``{column: {row: value}}`` with columns ``stored``, ``random``, ``shadow``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = load_default()
    enc = TorchEncoder(models.encoder)
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + users)
    enrol = models.world.render(ids, torch.zeros_like(ids))
    probe = models.world.render(ids, torch.ones_like(ids))
    z_store = embed(enc, enrol, flip=False)  # the templates in the database
    z_probe = embed(enc, probe, flip=False)  # fresh captures at verification time
    i, j, same = genuine_impostor_pairs(users)
    acc_store, _, thr = verification_accuracy(pair_distances(z_store[i], z_probe[j]), same)
    threshold = float(np.median(thr))  # the system's threshold, fitted on unprotected templates
    people = np.arange(users)
    # the operating point: every probe against every stored template, the threshold for FAR 1e-3
    # fitted on the clean gallery (what a running system has)
    op_far = 1e-3 if users * (users - 1) * 1e-3 >= 1 else None
    _, clean_imp = cross_identity_scores(z_probe.numpy(), people, z_store.numpy(), people)
    system_thr = threshold_at_far(clean_imp, op_far) if op_far else None

    columns: dict[str, dict[str, float]] = {}
    recs = {}
    for name in ("stored", *STARTS):
        if name == "stored":
            z, acc, rate = z_store, acc_store, float("nan")
        else:
            t = time.perf_counter()
            z = protect(z_store, models.shadow, enc, eps=eps, alpha=alpha, steps=steps, start=name, progress=False)
            rate = users / (time.perf_counter() - t)
            acc, _, _ = verification_accuracy(pair_distances(z[i], z_probe[j]), same)
        with torch.no_grad():
            recs[name] = models.attacker(z)
        hits = pair_distances(embed(enc, recs[name], flip=False), z_probe) < threshold
        gen, imp = cross_identity_scores(z_probe.numpy(), people, z.numpy(), people)
        at_system = operating_point(gen, imp, threshold=system_thr) if op_far else None
        refit = operating_point(gen, imp, op_far) if op_far else None
        columns[name] = {
            "verification accuracy (%)": 100 * acc,
            "TAR@FAR 1e-3, system threshold (%)": 100 * at_system.tar if at_system else float("nan"),
            "TAR@FAR 1e-3, re-fitted (%)": 100 * refit.tar if refit else float("nan"),
            "attack accepted as the person (%)": 100 * float(hits.mean()),
            "attack SSIM to the face": float(ssim(recs[name], enrol).mean()),
            "throughput (templates/s)": rate,
        }
    print(
        f"\nadvface_fast demo: {users} enrolled people never seen in training; eps={eps}, alpha={alpha}, steps={steps}"
    )
    print("encoder, shadow decoder and attacker (another architecture, other identities): the shipped default models")
    print(
        f"accuracy: best threshold, 10 folds (the paper's protocol); TAR: genuine accepted at FAR 1e-3 over "
        f"{len(clean_imp):,} impostor pairs, at the threshold fitted on the stored (clean) templates, which a running "
        "system keeps, and re-fitted on the protected ones\n"
    )
    head = ["stored", "AdvFace, start=random", "AdvFace, start=shadow (paper)"]
    print(f"  {'':36}" + "".join(f"{h:>31}" for h in head))
    for row in columns["stored"]:
        vals = [columns[c][row] for c in ("stored", *STARTS)]
        print(f"  {row:36}" + "".join("{:>31}".format("-" if np.isnan(v) else f"{v:.2f}") for v in vals))
    n = 10
    grid = image_grid([enrol[:n].numpy()] + [recs[c][:n].numpy() for c in ("stored", *STARTS)], scale=3)
    path = write_png(out / "demo_grid.png", grid)
    print(f"\n  picture: {path}")
    print(
        "  rows: original face | attack on the stored template | on AdvFace (random start) | on AdvFace (shadow start)"
    )
    return columns
