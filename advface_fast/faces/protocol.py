"""Verification protocols for labelled photo folders that come without a pairs file.

:func:`pairs_from_identities` builds an LFW-shaped protocol: identities split into ``n_folds``
disjoint folds; per identity with two or more images up to ``pairs_per_identity`` matched pairs
of disjoint images (images 0 and 1, then 2 and 3, ...: the first of each enrolled, the second the
probe) and as many mismatched pairs (each of its enrolled images against a probe of another
identity of the same fold). Identities with a single image are not used; the protocol's ``files``
are the images its pairs use.
"""

from __future__ import annotations

import numpy as np

from ..data.photo_sets import LabelledFiles, PairProtocol


def pairs_from_identities(
    data: LabelledFiles, n_folds: int = 10, seed: int = 0, pairs_per_identity: int = 1
) -> PairProtocol:
    """An identity-disjoint pair protocol over ``data`` (see the module docstring); a collection
    of few people with many photos each gets more pairs with a larger ``pairs_per_identity``. A set
    with fewer than ``2 * n_folds`` identities of two or more images gets fewer folds (two people
    each, at least 2 folds; the protocol's ``n_folds`` says how many)."""
    if pairs_per_identity < 1:
        raise ValueError(f"pairs_per_identity must be at least 1, got {pairs_per_identity}")
    rng = np.random.default_rng(seed)
    by_id = [np.flatnonzero(data.labels == k) for k in range(len(data.names))]
    multi = [k for k, idx in enumerate(by_id) if len(idx) >= 2]
    if len(multi) < 2 * n_folds:  # a small set: as many folds as it supports (2 people each), stated
        if len(multi) < 4:
            raise ValueError(
                f"a pair protocol needs at least 4 identities with two or more images (2 folds of 2), got {len(multi)}"
            )
        n_folds = len(multi) // 2
    order = rng.permutation(multi)
    folds = np.array_split(order, n_folds)
    first, second, same, fold = [], [], [], []
    for f, ids in enumerate(folds):
        per = [min(pairs_per_identity, len(by_id[k]) // 2) for k in ids]
        matched = [(by_id[k][2 * r], by_id[k][2 * r + 1]) for k, m in zip(ids, per, strict=True) for r in range(m)]
        mismatched = []
        for r in range(max(per)):  # round r: the identities with an r-th pair, each against another's
            have = [k for k, m in zip(ids, per, strict=True) if m > r]
            if len(have) < 2:  # no other identity has an r-th probe: another's first probe
                others = [k for k in ids if k not in have]
                mismatched += [(by_id[k][2 * r], by_id[int(rng.choice(others))][1]) for k in have]
                continue
            shift = (np.arange(len(have)) + rng.integers(1, len(have), len(have))) % len(have)
            mismatched += [(by_id[k][2 * r], by_id[have[j]][2 * r + 1]) for k, j in zip(have, shift, strict=True)]
        for pairs, s in ((matched, True), (mismatched, False)):
            for a, b in pairs:
                first.append(a)
                second.append(b)
                same.append(s)
                fold.append(f)
    # only the images the pairs use are aligned and embedded (a collection of 100,000 photos of
    # 1,000 people needs 2,000 of them)
    used, index = np.unique(np.array(first + second, dtype=np.int64), return_inverse=True)
    n = len(first)
    return PairProtocol(
        [data.files[k] for k in used],
        [data.names[data.labels[k]] for k in used],
        index[:n].astype(np.int64),
        index[n:].astype(np.int64),
        np.array(same, dtype=bool),
        np.array(fold, dtype=np.int64),
    )
