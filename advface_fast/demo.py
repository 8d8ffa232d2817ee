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

from .defaults import IDS, load_default
from .encoders import TorchEncoder
from .metrics import pair_distances, ssim, verification_accuracy
from .png import image_grid, write_png
from .protector import protect
from .train.encoder import embed

# Defaults of the demo; the evaluation harness sweeps them (README: "Choosing eps").
EPS, ALPHA, STEPS = 0.03, 0.006, 10


def _pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Genuine pairs (enrolled i, probe i) and as many impostor pairs (enrolled i, probe j != i)."""
    rng = np.random.default_rng(seed)
    gi = np.arange(n)
    imp = (gi + rng.integers(1, n, n)) % n
    i = np.concatenate([gi, gi])
    j = np.concatenate([gi, imp])
    same = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    order = rng.permutation(2 * n)
    return i[order], j[order], same[order]


def run_demo(
    out_dir: str | Path = "advface_demo_out",
    *,
    users: int = 500,
    eps: float = EPS,
    alpha: float = ALPHA,
    steps: int = STEPS,
) -> dict[str, float]:
    """Run the demo, print a table, write ``out_dir/demo_grid.png``; returns the numbers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = load_default()
    enc = TorchEncoder(models.encoder)
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + users)
    enrol = models.world.render(ids, torch.zeros_like(ids))
    probe = models.world.render(ids, torch.ones_like(ids))
    z_store = embed(enc, enrol, flip=False)  # the templates in the database
    z_probe = embed(enc, probe, flip=False)  # fresh captures at verification time

    t = time.perf_counter()
    z_prot = protect(z_store, models.shadow, enc, eps=eps, alpha=alpha, steps=steps, progress=False)
    seconds = time.perf_counter() - t

    i, j, same = _pairs(users)
    acc_clean, _, thr = verification_accuracy(pair_distances(z_store[i], z_probe[j]), same)
    acc_prot, _, _ = verification_accuracy(pair_distances(z_prot[i], z_probe[j]), same)
    threshold = float(np.median(thr))  # the system's threshold, fitted on unprotected templates

    with torch.no_grad():
        rec_clean, rec_prot = models.attacker(z_store), models.attacker(z_prot)
    hit_clean = pair_distances(embed(enc, rec_clean, flip=False), z_probe) < threshold
    hit_prot = pair_distances(embed(enc, rec_prot, flip=False), z_probe) < threshold
    res = {
        "verification accuracy, stored templates (%)": 100 * acc_clean,
        "verification accuracy, protected templates (%)": 100 * acc_prot,
        "attack accepted as the person, stored (%)": 100 * float(hit_clean.mean()),
        "attack accepted as the person, protected (%)": 100 * float(hit_prot.mean()),
        "attack SSIM to the face, stored": float(ssim(rec_clean, enrol).mean()),
        "attack SSIM to the face, protected": float(ssim(rec_prot, enrol).mean()),
        "protect throughput (templates/s)": users / seconds,
    }
    print(f"\nadvface_fast demo: {users} enrolled people, eps={eps}, alpha={alpha}, steps={steps}")
    print("  (encoder, shadow decoder and attacker: the shipped default models of the synthetic-face world)")
    for k, v in res.items():
        print(f"  {k:<48} {v:10.2f}")
    n = 10
    grid = image_grid([enrol[:n].numpy(), rec_clean[:n].numpy(), rec_prot[:n].numpy()], scale=3)
    path = write_png(out / "demo_grid.png", grid)
    print(f"  picture: {path} (rows: original | attack on the stored template | attack on the protected one)")
    return res
