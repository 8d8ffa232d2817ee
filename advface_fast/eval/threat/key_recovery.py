"""Attacks on the keyed rotation that need no known pairs: distribution alignment and a score oracle.

Both target ``stored = Q z~`` (``Q`` the key's secret orthogonal matrix, ``z~`` the AdvFace
template) and return an estimate of ``Q^T stored`` for the rest of the suite (purifier, decoder).

**Moment alignment** (:func:`moment_alignment`). Threat model: the attacker stole the rotated
gallery (many rows) and has clean templates of its own faces (other people), no pairs, no key.
The two clouds are the same distribution up to ``Q``, so their covariances are ``C_s = Q C_z Q^T``:
eigenvectors match up to sign (fixed by the sign of each axis' third moment), giving

    Q^ = V_s diag(signs) V_z^T.

It fails where eigenvalues are close (their eigenvectors mix) and where the two populations
differ; how far it gets on real templates is what the suite measures.

**Score oracle** (:func:`score_oracle`). Threat model: the attacker can submit probe images to
the live matcher for a claimed identity and read the similarity score; it has E (black box
suffices) so knows each probe's template ``p_j``. The matcher rotates probes with the key, so the
score is ``cos(Q p_j, s) = p_j . (Q^T s / |s|)``: linear in the unknown ``u = Q^T s / |s|``.
``n >= D`` queries solve for it by least squares (scores rounded to ``decimals`` digits, as an API
might return them). Any cosine-preserving template transform is open to this: the key lives in
the matcher, and the matcher answers. Returning decisions instead of scores, query budgets and
an audit log are what stand against it: ``advface-fast serve`` answers decisions, and
``benchmarks/service_oracle_attack.py`` runs this attack and a decision-only one
(:mod:`.decision_oracle`) against it over HTTP.
"""

from __future__ import annotations

import torch
from torch import nn


def _skew_signs(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Signs making each column of ``v`` point along positive third moment of ``x``'s projections."""
    proj = (x - x.mean(0)) @ v
    s = torch.sign((proj**3).mean(0))
    s[s == 0] = 1
    return s


def moment_alignment(own_clean: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """Estimate the rotation ``(D, D)`` (float64) mapping ``own_clean`` ``(N, D)``'s distribution
    onto ``stored`` ``(M, D)``'s, from covariance eigenvectors and third-moment signs."""
    a, b = own_clean.double(), stored.double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    _, va = torch.linalg.eigh(torch.cov(a.T))
    _, vb = torch.linalg.eigh(torch.cov(b.T))
    va = va * _skew_signs(va, a)
    vb = vb * _skew_signs(vb, b)
    return vb @ va.T


def oracle_scores(probes: torch.Tensor, stored: torch.Tensor, rotation: torch.Tensor, decimals: int) -> torch.Tensor:
    """What the matcher answers, ``(n, N)``: ``cos(Q p_j, s_i)`` for probe rows ``p_j`` ``(n, D)``
    (clean templates, rotated by the matcher with ``rotation`` ``(D, D)``) against stored rows
    ``s_i`` ``(N, D)``, rounded to ``decimals`` digits. The suite's stand-in for the live system."""
    rp = nn.functional.normalize(probes.double(), dim=1) @ rotation.double().T
    s = rp @ nn.functional.normalize(stored.double(), dim=1).T
    return torch.round(s * 10**decimals) / 10**decimals


def score_oracle(probes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The attacker's side: least-squares ``u_i`` with ``normalize(probes) @ u_i = scores[:, i]``
    (probes ``(n, D)``, scores ``(n, N)``), normalised; ``(N, D)`` float32 estimates of the stored
    templates with the rotation undone."""
    p = nn.functional.normalize(probes.double(), dim=1)
    u = torch.linalg.lstsq(p, scores.double()).solution  # (D, N): one solve for every target
    return nn.functional.normalize(u.T, dim=1).float()
