"""Unlinkability of protected templates (ISO/IEC 24745; Gomez-Barrero et al., IEEE TIFS 2018).

Two systems enrol the same people, each with its own protection (two keys). The attacker holds
both databases and compares templates across them: *mated* comparisons are one person's templates
(different photos) in system A and system B, *non-mated* ones two different people. The global
linkability ``D_sys`` in [0, 1] (0: the scores say nothing about whether two templates are the
same person; 1: they always do) is computed by ``audmetric.linkability`` (histogram estimate of
the two score densities, prior ratio 1), a kept implementation of the paper's measure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..optional import import_optional


def cross_pairs(person: Sequence[str], seed: int = 0, impostors_per_mated: int = 4) -> tuple[np.ndarray, ...]:
    """Comparison pairs over rows labelled ``person``: for every person with two or more rows,
    (first row, second row) as mated; ``impostors_per_mated`` random pairs of rows of two
    different people per mated pair as non-mated. Returns ``(a, b, mated)`` index arrays."""
    names = np.asarray(person)
    by: dict[str, list[int]] = {}
    for i, n in enumerate(names.tolist()):
        by.setdefault(n, []).append(i)
    ma = np.array([v[0] for v in by.values() if len(v) > 1], dtype=np.int64)
    mb = np.array([v[1] for v in by.values() if len(v) > 1], dtype=np.int64)
    if len(ma) == 0:
        raise ValueError("no person has two rows: mated comparisons are impossible")
    rng = np.random.default_rng(seed)
    k = impostors_per_mated * len(ma)
    na, nb = rng.integers(0, len(names), k), rng.integers(0, len(names), k)
    keep = names[na] != names[nb]
    na, nb = na[keep], nb[keep]
    a, b = np.concatenate([ma, na]), np.concatenate([mb, nb])
    return a, b, np.concatenate([np.ones(len(ma), bool), np.zeros(len(na), bool)])


def linkability(
    system_a: torch.Tensor,
    system_b: torch.Tensor,
    a: np.ndarray,
    b: np.ndarray,
    mated: np.ndarray,
    nbins: int = 100,
) -> dict:
    """``D_sys`` of cosine scores between rows ``a`` of ``system_a`` ``(N, D)`` and rows ``b`` of
    ``system_b`` ``(N, D)`` (one row per photo, both systems over the same photos), with the mean
    mated and non-mated scores, and ``d_sys_floor``: the same estimate for two groups of
    non-mated scores (nothing to link), the histogram estimator's positive bias at these counts.

    ``nbins`` histogram bins over the scores' range: audmetric's own default (mated count / 10)
    puts a separable system's mated mass in a few edge bins that its trapezoid integration halves
    (0.85 for two disjoint score clouds of 300 mated pairs, 0.99 with 100 bins)."""
    audmetric = import_optional("audmetric", "the unlinkability measure")

    sa = torch.nn.functional.normalize(system_a.double(), dim=1)
    sb = torch.nn.functional.normalize(system_b.double(), dim=1)
    s = (sa[torch.from_numpy(a)] * sb[torch.from_numpy(b)]).sum(1).numpy()
    # the estimator's floor at these counts: non-mated scores split into two groups of the same sizes
    non = np.random.default_rng(0).permutation(s[~mated])
    fake = np.zeros(len(non), bool)
    fake[: min(int(mated.sum()), len(non) // 2)] = True
    return {
        "d_sys": float(audmetric.linkability(mated.astype(int).tolist(), s.tolist(), nbins=nbins)),
        "d_sys_floor": float(audmetric.linkability(fake.astype(int).tolist(), non.tolist(), nbins=nbins)),
        "mated_mean": float(s[mated].mean()),
        "non_mated_mean": float(s[~mated].mean()),
        "mated": int(mated.sum()),
        "non_mated": int((~mated).sum()),
    }
