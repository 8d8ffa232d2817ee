"""Unpaired alignment by Gromov-Wasserstein: a matching from the rotation-invariant geometry alone.

Threat model: as for :mod:`.wasserstein_procrustes`: the attacker holds records ``y_j = Q x_j``
under one unknown orthogonal key ``Q`` and clean templates of its own (other faces, or a public
photo set that may share people with the gallery); no pairs, no key.

An orthogonal key keeps every inner product, so each cloud's matrix of pairwise squared distances
is exactly what it was before the key. Gromov-Wasserstein matches two clouds through those
matrices only, with no common coordinates (Memoli 2011; Peyre, Cuturi and Solomon, ICML 2016):

    min_T  sum_ijkl (C1_ik - C2_jl)^2 T_ij T_kl,   T a transport plan between the two batches,

solved by POT (:func:`ot.gromov.gromov_wasserstein`, conditional gradient, and
:func:`ot.gromov.entropic_gromov_wasserstein` with entropic regularisation). The plan ``T`` pairs
own rows with records; orthogonal Procrustes on those soft pairs gives ``Q^``, which
Wasserstein-Procrustes then refines on the full clouds (the recipe of Alvarez-Melis and Jaakkola,
"Gromov-Wasserstein alignment of word embedding spaces", EMNLP 2018).
It needs the two clouds to have the same shape: a public set that shares people with the gallery
gives it that; faces of other people give it only the population's shape.

:func:`gromov_wasserstein` returns ``Q^`` ``(D, D)`` in the convention of
:func:`~.procrustes.procrustes` (the estimate of a record's template is ``stored @ Q^``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ...optional import import_optional
from .procrustes import procrustes
from .wasserstein_procrustes import check_clouds, sample_rows, wasserstein_procrustes


def gromov_wasserstein(
    own_clean: torch.Tensor,
    stored: torch.Tensor,
    points: int = 400,
    epsilons: tuple[float, ...] = (0.0, 5e-3, 2e-2),
    refine_iters: int = 40,
    seed: int = 0,
) -> torch.Tensor:
    """The rotation ``Q^`` ``(D, D)`` (float64) aligning ``own_clean`` ``(N, D)`` onto ``stored``
    ``(M, D)``: Gromov-Wasserstein between ``min(points, N, M)`` random rows of each (squared
    distance matrices scaled by their mean), once per entry of ``epsilons`` (0: the unregularised
    conditional-gradient solver; otherwise the entropy weight on that scale), each plan turned into
    a rotation by Procrustes on its soft pairs; those candidates start ``refine_iters``
    Wasserstein-Procrustes alternations, and the candidate with the lowest matching cost wins (the
    problem is non-convex: each solver may stop in a local optimum)."""
    ot = import_optional("ot", "the optimal-transport alignment attacks")
    a, b = check_clouds(own_clean, stored)
    if not epsilons:
        raise ValueError("give at least one epsilon")
    x, y = sample_rows(a, b, points, np.random.default_rng(seed))
    n = len(x)
    c1, c2 = torch.cdist(x, x).pow(2), torch.cdist(y, y).pow(2)
    c1, c2 = (c1 / c1.mean()).numpy(), (c2 / c2.mean()).numpy()
    w = np.full(n, 1 / n)
    candidates = []
    with warnings.catch_warnings():  # a small epsilon may not converge; its candidate then loses on cost
        warnings.simplefilter("ignore")
        for eps in epsilons:
            if eps == 0:
                plan = ot.gromov.gromov_wasserstein(c1, c2, w, w, "square_loss")
            else:
                plan = ot.gromov.entropic_gromov_wasserstein(c1, c2, w, w, "square_loss", epsilon=eps, max_iter=200)
            if np.isfinite(plan).all() and plan.sum() > 0.5:  # an underflowed plan is no candidate
                candidates.append(procrustes(x, torch.from_numpy(plan / plan.sum()) @ y * n))
    if not candidates:
        raise RuntimeError("every Gromov-Wasserstein solve failed (plans underflowed): raise epsilons")
    return wasserstein_procrustes(a, b, inits=candidates, restarts=0, iters=refine_iters, seed=seed)
