"""Unpaired alignment by Wasserstein-Procrustes: a rotation and a matching found together.

Threat model: the attacker stole records ``y_j = Q x_j`` under one unknown orthogonal key ``Q``
(the whole gallery under a system-wide key, or one shard's records), holds clean templates of its
own (other faces, or a public photo set that may share people with the gallery), no known pairs
and no key. It looks for the rotation under which its own cloud and the stolen one coincide as
distributions:

    min_{Q orthogonal}  min_{P transport plan}  sum_ij P_ij ||x_i Q^T - y_j||^2,

alternating the two minimisations on mini-batches (Grave, Joulin and Berthet, "Unsupervised
alignment of embeddings with Wasserstein Procrustes", AISTATS 2019): with ``Q`` fixed, ``P`` is
an exact optimal assignment between a batch of each cloud (POT's network simplex, :func:`ot.emd`);
with ``P`` fixed, ``Q`` is the orthogonal Procrustes solution for the matched batch. The problem
is not convex, so it is started from several rotations and the attacker keeps the one whose
matched batches lie closest (the objective needs no ground truth). Where the two clouds are the
same people or the same tightly structured distribution, it recovers ``Q``; where they are
different people whose clouds differ more than the rotation moves them, it cannot.

:func:`wasserstein_procrustes` returns ``Q^`` ``(D, D)`` in the convention of
:func:`~.procrustes.procrustes` (``stored ~ clean @ Q^.T``; the estimate of a record's template is
``stored @ Q^``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...optional import import_optional
from ...rotation import haar_rotation
from .procrustes import procrustes

EMD_ITERS = 10_000_000  # network-simplex pivots: enough for exact assignments of a few thousand rows


def matching_cost(own_clean: torch.Tensor, stored: torch.Tensor, q: torch.Tensor, batch: int, seed: int) -> float:
    """The mean squared distance ``(1/b) sum ||x_i Q^T - y_pi(i)||^2`` of an optimal one-to-one
    matching between ``batch`` random rows of each cloud, ``own_clean`` mapped by ``q``: the
    objective the attacker ranks its candidate rotations by (lower: the clouds coincide)."""
    x, y = sample_rows(own_clean, stored, batch, np.random.default_rng(seed))
    plan, cost = _assignment(x @ q.T, y)
    return float((plan * cost).sum())


def wasserstein_procrustes(
    own_clean: torch.Tensor,
    stored: torch.Tensor,
    inits: Sequence[torch.Tensor] = (),
    restarts: int = 4,
    iters: int = 40,
    batch: int = 512,
    seed: int = 0,
) -> torch.Tensor:
    """The rotation ``Q^`` ``(D, D)`` (float64) aligning ``own_clean`` ``(N, D)`` onto ``stored``
    ``(M, D)`` with no pairs: Wasserstein-Procrustes started from each of ``inits`` (e.g. another
    attack's estimate) and from ``restarts`` Haar-random rotations, ``iters`` alternations on
    batches of ``min(batch, N, M)`` rows each; the start whose final matching cost
    (:func:`matching_cost` on a fresh batch) is lowest wins."""
    a, b = check_clouds(own_clean, stored)
    dim = a.shape[1]
    rng = np.random.default_rng(seed)
    starts = [q.double() for q in inits]
    starts += [haar_rotation(f"wasserstein-procrustes-{seed}-{r}".encode(), dim) for r in range(restarts)]
    if not starts:
        raise ValueError("give at least one start: inits or restarts > 0")
    best, best_cost = starts[0], float("inf")
    for q in starts:
        for _ in range(iters):
            x, y = sample_rows(a, b, batch, rng)
            plan, _ = _assignment(x @ q.T, y)
            q = procrustes(x, torch.from_numpy(plan) @ y * len(x))  # each own row against its matched record
        c = matching_cost(a, b, q, batch, seed + 1)
        if c < best_cost:
            best, best_cost = q, c
    return best


def check_clouds(own_clean: torch.Tensor, stored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both clouds in float64, refused unless they are ``(N, D)`` and ``(M, D)`` with two rows each."""
    a, b = own_clean.double(), stored.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"own templates {tuple(a.shape)} and records {tuple(b.shape)} must be (N, D) and (M, D)")
    if min(len(a), len(b)) < 2:
        raise ValueError("alignment needs at least two rows on each side")
    return a, b


def sample_rows(
    a: torch.Tensor, b: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``min(size, len(a), len(b))`` random rows of each cloud (float64), without replacement."""
    n = min(size, len(a), len(b))
    ia = torch.from_numpy(rng.choice(len(a), n, replace=False))
    ib = torch.from_numpy(rng.choice(len(b), n, replace=False))
    return a[ia].double(), b[ib].double()


def _assignment(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The optimal one-to-one matching of equal batches ``x`` and ``y`` by squared distance:
    ``(plan, cost)``, each ``(n, n)`` (plan rows sum to ``1 / n``)."""
    ot = import_optional("ot", "the optimal-transport alignment attacks")
    cost = torch.cdist(x, y).pow(2).numpy()
    uniform = np.full(len(x), 1 / len(x))
    return ot.emd(uniform, uniform, cost, numItermax=EMD_ITERS), cost
