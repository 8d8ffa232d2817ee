"""Face verification metrics: pair distances, 10-fold accuracy, TAR at FAR.

Verification follows the insightface protocol: L2-normalised embeddings, squared L2
distance, thresholds 0 to 4 in steps of 0.01, 10 folds without shuffling, the best threshold on
nine folds scored on the tenth; mean and standard deviation over the folds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def genuine_impostor_pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs over ``n`` people with two captures each: for each person one genuine pair (capture A
    of i, capture B of i) and one impostor pair (A of i, B of a random other person), shuffled.
    Returns ``(index into A, index into B, issame)``, each of length ``2n``."""
    rng = np.random.default_rng(seed)
    imp = (np.arange(n) + rng.integers(1, n, n)) % n
    i, j = np.concatenate([np.arange(n)] * 2), np.concatenate([np.arange(n), imp])
    order = rng.permutation(2 * n)
    return i[order], j[order], (np.arange(2 * n) < n)[order]


def pair_distances(emb1: np.ndarray | torch.Tensor, emb2: np.ndarray | torch.Tensor) -> np.ndarray:
    """Squared L2 distances of L2-normalised embedding pairs ``(N, D), (N, D) -> (N,)`` (in [0, 4])."""
    a = F.normalize(torch.as_tensor(np.asarray(emb1), dtype=torch.float64), dim=1)
    b = F.normalize(torch.as_tensor(np.asarray(emb2), dtype=torch.float64), dim=1)
    return ((a - b) ** 2).sum(1).numpy()


def verification_accuracy(
    dist: np.ndarray,
    issame: np.ndarray,
    n_folds: int = 10,
    thresholds: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> tuple[float, float, np.ndarray]:
    """10-fold verification accuracy from pair distances.

    Returns ``(mean accuracy, std, best threshold of each fold)``. Folds are consecutive blocks of
    pairs (no shuffling), as in insightface's evaluation, or the protocol's own: ``folds`` gives
    each pair's fold number (LFW's ``pairs.txt`` folds are identity-disjoint). Each fold's threshold
    is the one most accurate on the other folds; where several consecutive ones are equally
    accurate (a gap between the genuine and impostor distances), the middle of that range: the
    strictest would sit at the edge of the genuine pairs and reject new ones just past it.
    """
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    if dist.shape != issame.shape or dist.ndim != 1:
        raise ValueError(f"dist and issame must be 1-D of one length, got {dist.shape} and {issame.shape}")
    if len(dist) < n_folds:
        raise ValueError(f"need at least {n_folds} pairs for {n_folds} folds, got {len(dist)}")
    thr = np.arange(0, 4, 0.01) if thresholds is None else np.asarray(thresholds)
    # accuracy of each threshold on each pair: predicted same when dist < thr
    correct = (dist[None, :] < thr[:, None]) == issame[None, :]
    if folds is None:
        blocks = np.array_split(np.arange(len(dist)), n_folds)
    else:
        folds = np.asarray(folds)
        if folds.shape != dist.shape:
            raise ValueError(f"folds must give one fold per pair, got {folds.shape} for {dist.shape}")
        blocks = [np.flatnonzero(folds == f) for f in np.unique(folds)]
    accs, best = [], []
    for k, test in enumerate(blocks):
        train = np.concatenate([f for j, f in enumerate(blocks) if j != k])
        t = _middle_of_best(correct[:, train].mean(1))
        best.append(thr[t])
        accs.append(correct[t, test].mean())
    return float(np.mean(accs)), float(np.std(accs)), np.array(best)


def _middle_of_best(acc: np.ndarray) -> int:
    """The index in the middle of the longest run of consecutive thresholds that share the best
    accuracy (the first such run on a tie of lengths)."""
    best = np.flatnonzero(acc == acc.max())
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    run = max(runs, key=len)
    return int(run[len(run) // 2])


def far_supported(impostors: int, far: float) -> bool:
    """Whether ``impostors`` pairs can measure a false accept rate of ``far``: at least one false
    accept must be allowed (below that, "TAR at FAR" is TAR at zero false accepts, which only
    ``far = 0`` asks for)."""
    return far == 0 or impostors * far >= 1


def tar_at_far(dist: np.ndarray, issame: np.ndarray, far: float = 1e-3) -> float:
    """True accept rate at the threshold whose false accept rate on the impostor pairs is ``far``
    (the largest threshold with FAR <= far). Refuses a ``far`` the impostor count cannot measure
    (:func:`far_supported`)."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    imp = np.sort(dist[~issame])
    if len(imp) == 0 or issame.sum() == 0:
        raise ValueError("tar_at_far needs both genuine and impostor pairs")
    if not far_supported(len(imp), far):
        need = int(np.ceil(1 / far))
        raise ValueError(f"{len(imp)} impostor pairs cannot measure FAR {far:g} (need at least {need})")
    k = int(np.floor(far * len(imp)))  # at most k impostors may fall below the threshold
    thr = imp[k] if k < len(imp) else np.inf
    return float((dist[issame] < thr).mean())
