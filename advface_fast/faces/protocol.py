"""Verification protocols for labelled photo folders that come without a pairs file.

:func:`pairs_from_identities` builds an LFW-shaped protocol: identities split into ``n_folds``
disjoint folds; per identity with two or more images one matched pair (its first image enrolled,
its second the probe) and one mismatched pair (its first image against the second image of
another identity of the same fold). Identities with a single image are not used; the protocol's
``files`` are the images its pairs use.
"""

from __future__ import annotations

import numpy as np

from .datasets import LabelledFiles, PairProtocol


def pairs_from_identities(data: LabelledFiles, n_folds: int = 10, seed: int = 0) -> PairProtocol:
    """An identity-disjoint pair protocol over ``data`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    by_id = [np.flatnonzero(data.labels == k) for k in range(len(data.names))]
    multi = [k for k, idx in enumerate(by_id) if len(idx) >= 2]
    if len(multi) < 2 * n_folds:
        raise ValueError(
            f"a {n_folds}-fold protocol needs at least {2 * n_folds} identities with two or more images, "
            f"got {len(multi)}"
        )
    order = rng.permutation(multi)
    folds = np.array_split(order, n_folds)
    first, second, same, fold = [], [], [], []
    for f, ids in enumerate(folds):
        matched = [(by_id[k][0], by_id[k][1]) for k in ids]
        shift = (np.arange(len(ids)) + rng.integers(1, len(ids), len(ids))) % len(ids)
        mismatched = [(by_id[k][0], by_id[ids[j]][1]) for k, j in zip(ids, shift, strict=True)]
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
