"""The mechanics of the known-pair attack with a prior on the keyed rotation (#36), on a small
constructed cloud: it needs far fewer pairs than the dimension and its error falls with pairs."""

from __future__ import annotations

import pytest
import torch

from advface_fast.eval.threat.known_pairs_prior import estimate_records
from advface_fast.rotation import keyed_rotation


def _templates(n: int, dim: int, seed: int) -> torch.Tensor:
    """Unit templates concentrated around a common direction, as face templates are (a shared
    mean plus anisotropic spread)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.05, dim, dtype=torch.float64)
    mean = torch.zeros(dim, dtype=torch.float64)
    mean[0] = 2.0
    x = mean + torch.randn(n, dim, generator=g, dtype=torch.float64) * scales
    return x / x.norm(dim=1, keepdim=True)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())


def test_known_pairs_with_a_prior_recover_records_from_few_pairs():
    dim = 32
    q = keyed_rotation(b"alignment-test-key-0123456789abc", dim).double()
    own = _templates(2000, dim, seed=1)  # the attacker's own faces (never enrolled)
    victims = _templates(200, dim, seed=2)
    known = _templates(64, dim, seed=3)  # the attacker's enrolments
    stored, known_stored = victims @ q.T, known @ q.T
    cos = [_cos(estimate_records(known[:n], known_stored[:n], stored, own), victims) for n in (0, 4, 16, dim)]
    assert cos[0] < cos[1] < cos[2] < cos[3]  # the error falls with pairs
    # measured: 0.51 (the prior's mean alone), 0.65 with 4 pairs, 0.90 with 16, 0.9997 with D
    assert cos[1] > cos[0] + 0.1 and cos[2] > 0.85 and cos[3] > 0.999
    # without the prior (the mean of a cloud of other people), 4 pairs fix 4 of 32 coordinates
    flat = estimate_records(known[:4], known_stored[:4], stored, torch.randn(2000, dim, dtype=torch.float64))
    assert _cos(flat, victims) < cos[1]


def test_known_pairs_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes do not agree"):
        estimate_records(torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(5, 9), torch.zeros(10, 8))
