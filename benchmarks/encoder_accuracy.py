"""Verification accuracy of the shipped encoder on identities it never saw (10-fold protocol).

    python benchmarks/encoder_accuracy.py [--ids 1000]

Pairs: for each held-out identity (300000+), one genuine pair (images 2 and 3 of that person) and
one impostor pair (image 2 of it, image 3 of another); embeddings summed with their mirror image
and L2-normalised. Also prints the raw-pixel baseline on the same pairs.
"""

from __future__ import annotations

import argparse

import torch

from advface_fast.data.world import IDS
from advface_fast.encoders.embed import embed
from advface_fast.metrics import genuine_impostor_pairs, pair_distances, tar_at_far, verification_accuracy
from advface_fast.models.defaults import load_default


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ids", type=int, default=1000)
    args = p.parse_args()
    m = load_default()
    n = args.ids
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + n)
    a_img, b_img = m.world.render(ids, torch.full_like(ids, 2)), m.world.render(ids, torch.full_like(ids, 3))
    i, j, same = genuine_impostor_pairs(n, 0)
    a, b = embed(m.encoder, a_img), embed(m.encoder, b_img)
    d = pair_distances(a[i], b[j])
    acc, std, _ = verification_accuracy(d, same)
    pix, pstd, _ = verification_accuracy(pair_distances(a_img.flatten(1)[i], b_img.flatten(1)[j]), same)
    print(f"held-out identities: {n}, pairs: {2 * n}")
    print(
        f"encoder verification accuracy: {100 * acc:.2f} +- {100 * std:.2f} %  (TAR@FAR=1e-2: "
        f"{100 * tar_at_far(d, same, 1e-2):.1f} %)"
    )
    print(f"raw-pixel baseline:            {100 * pix:.2f} +- {100 * pstd:.2f} %")


if __name__ == "__main__":
    main()
