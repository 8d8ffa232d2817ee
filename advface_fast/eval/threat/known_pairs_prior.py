"""A known-pair attack on a distance-preserving template transform that needs far fewer pairs
than the dimension: each stored record estimated from its inner products with the attacker's
pairs and a Gaussian prior from the attacker's own clean templates.

Threat model: the attacker holds the stolen database (records ``y_j = Q x_j``, ``Q`` an unknown
orthogonal transform) and ``n`` known pairs ``(a_i, Q a_i)``: its own enrolments, clean template
and stored record (an insider, or accomplices). It also has many clean templates of its own faces,
none of them enrolled. No key.

An orthogonal ``Q`` preserves inner products, so every record's inner products with the known
inputs are known: ``b_ij = y_j . (Q a_i) = x_j . a_i``. That fixes ``x_j``'s component in the span
of the ``a_i`` exactly (``n >= D``: the whole record, as Procrustes does); the rest comes from the
prior. With ``x ~ N(mu, S)`` fitted on the attacker's own templates, the conditional mean given
``A^T x = b`` (``A = [a_1 .. a_n]``) is

    x^ = mu + S A (A^T S A)^-1 (b - A^T mu),

the estimate known-input attacks on distance-preserving transforms use (a few pairs already place
a record near its template when the templates' distribution is concentrated, as face templates are).
It needs no estimate of ``Q`` at all. :func:`estimate_records` implements it for a batch of records.
"""

from __future__ import annotations

import torch


def estimate_records(
    known_clean: torch.Tensor,
    known_stored: torch.Tensor,
    stored: torch.Tensor,
    own_clean: torch.Tensor,
    ridge: float = 1e-6,
) -> torch.Tensor:
    """Estimates ``(M, D)`` (float64) of the clean templates behind ``stored`` ``(M, D)`` records,
    from ``n`` known pairs (``known_clean``, ``known_stored``: ``(n, D)`` each) and the prior of
    ``own_clean`` ``(K, D)``. ``ridge`` (relative to the trace) keeps ``A^T S A`` invertible when
    the pairs are nearly dependent. ``n = 0`` gives the prior mean for every record."""
    a, sa = known_clean.double(), known_stored.double()
    y, own = stored.double(), own_clean.double()
    if a.shape != sa.shape or a.shape[1] != y.shape[1] or own.shape[1] != y.shape[1]:
        raise ValueError(f"shapes do not agree: pairs {a.shape} / {sa.shape}, records {y.shape}, own {own.shape}")
    mu = own.mean(0)
    if len(a) == 0:
        return mu.expand(len(y), -1).clone()
    cov = torch.cov(own.T) + ridge * torch.eye(own.shape[1], dtype=torch.float64) * torch.trace(torch.cov(own.T))
    b = y @ sa.T  # (M, n): x_j . a_i, read off the records and the attacker's own stored ones
    sa_t = cov @ a.T  # (D, n)
    gram = a @ sa_t  # (n, n)
    gram = gram + ridge * torch.trace(gram) / len(a) * torch.eye(len(a), dtype=torch.float64)
    resid = b - (a @ mu)[None, :]  # (M, n)
    return mu[None, :] + torch.linalg.solve(gram, resid.T).T @ sa_t.T
