"""Mechanics of the record-multiplicity attack (advface_fast/eval/threat/record_multiplicity.py):
pooling a person's estimates combines their information and touches nobody else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advface_fast.eval.threat.record_multiplicity import POOLINGS, pool_by_person

COS = torch.nn.functional.cosine_similarity
unit = torch.nn.functional.normalize


def _estimates(k: int, signal: float, seed: int = 0):
    """A face ``z``, the prior mean ``mu`` and ``k`` unit estimates of z, each ``mu`` plus
    ``signal`` times z's departure from it plus independent noise: a small ``signal`` is what a
    shard with few pairs gives, one near 1 what a broken key gives."""
    g = torch.Generator().manual_seed(seed)
    d = 64
    mu = unit(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u = unit(u - (u @ mu) * mu, dim=0)  # z's own direction, orthogonal to the prior mean
    z = unit(mu + u, dim=0)
    noise = 0.02 * torch.randn(k, d, generator=g, dtype=torch.float64)
    return z, mu, unit(mu + signal * (z - mu) + noise, dim=1)


def _pooled(est: torch.Tensor, mu: torch.Tensor, how: str) -> torch.Tensor:
    out = pool_by_person(est, np.zeros(len(est), dtype=int), mu, how)
    assert torch.allclose(out, out[:1].expand_as(out))  # one estimate for the person
    return out[0]


def test_evidence_pooling_combines_weak_estimates_which_averaging_cannot():
    z, mu, est = _estimates(6, 0.2)
    best_single = COS(est, z[None]).max()
    evidence, mean = _pooled(est, mu, "evidence"), _pooled(est, mu, "mean")
    assert COS(evidence, z, dim=0) > best_single + 0.1  # about 0.94 against 0.82
    assert COS(mean, z, dim=0) < best_single + 0.01  # the average keeps each estimate's shrinkage


def test_mean_pooling_suits_nearly_exact_estimates():
    z, mu, est = _estimates(6, 0.9)
    mean, evidence = _pooled(est, mu, "mean"), _pooled(est, mu, "evidence")
    assert COS(mean, z, dim=0) > COS(est, z[None]).max()  # the noise averages out
    assert COS(evidence, z, dim=0) < COS(mean, z, dim=0) - 0.2  # six departures overshoot


@pytest.mark.parametrize("how", POOLINGS)
def test_people_with_one_record_keep_their_estimate_and_others_are_untouched(how):
    g = torch.Generator().manual_seed(1)
    est = torch.randn(5, 8, generator=g, dtype=torch.float64) * 3
    person = np.array(["a", "b", "b", "c", "d"])
    out = pool_by_person(est, person, torch.randn(8, generator=g, dtype=torch.float64) * 2, how)
    keep = [0, 3, 4]
    assert torch.allclose(out[keep], unit(est[keep], dim=1), atol=1e-12)
    assert torch.allclose(out[1], out[2]) and not torch.allclose(out[1], unit(est[1], dim=0))


def test_bad_inputs_are_refused():
    est, mu = torch.randn(4, 8), torch.randn(8)
    with pytest.raises(ValueError, match="how must be"):
        pool_by_person(est, np.arange(4), mu, "median")
    with pytest.raises(ValueError, match=r"person \(V,\)"):
        pool_by_person(est, np.arange(3), mu)
    with pytest.raises(ValueError, match="prior_mean"):
        pool_by_person(est, np.arange(4), torch.randn(7))
