"""The default eps scales with the template dimension, so the default moves a unit template by the
same relative amount at any D (a fixed 0.08 moved 512-d templates to cosine ~0.49)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import advface_fast as af
from advface_fast.settings import DEFAULT_EPS, default_eps, resolve_eps_alpha


def _cosine_after_default_protect(dim: int, eps: float | None = None) -> float:
    torch.manual_seed(dim)
    z = torch.nn.functional.normalize(torch.randn(256, dim), dim=1)
    dec = af.MLPDecoder(dim, [64], (3, 8, 8))
    out = af.protect(z, dec, eps=eps, progress=False, backend="torch")
    return float(torch.nn.functional.cosine_similarity(out, z, dim=1).mean())


def test_default_eps_formula():
    assert default_eps(128) == DEFAULT_EPS
    assert default_eps(512) == pytest.approx(DEFAULT_EPS / 2)
    assert resolve_eps_alpha(None, None, 512) == pytest.approx((DEFAULT_EPS / 2, DEFAULT_EPS / 10))
    assert resolve_eps_alpha(0.1, None, 512) == pytest.approx((0.1, 0.02))
    assert resolve_eps_alpha(0.1, 0.03, 7) == (0.1, 0.03)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError):
            default_eps(bad)


def test_default_moves_templates_by_the_same_relative_amount_at_any_dimension():
    c128, c512, c1024 = (_cosine_after_default_protect(d) for d in (128, 512, 1024))
    assert 0.6 < c128 < 0.95
    assert abs(c512 - c128) < 0.03 and abs(c1024 - c128) < 0.03, (c128, c512, c1024)
    fixed = _cosine_after_default_protect(512, eps=DEFAULT_EPS)
    assert fixed < c128 - 0.15  # what a dimension-blind default did


def test_the_default_is_resolved_per_call_and_recorded():
    dec = af.MLPDecoder(512, [16], (3, 4, 4))
    p = af.Protector(dec, progress=False)
    z = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    out = p(z)
    assert p.params.eps == pytest.approx(DEFAULT_EPS * math.sqrt(128 / 512))
    # every element moved by at most eps before renormalisation: check the bound on the raw result
    raw = af.protect(z, dec, renorm=False, progress=False)
    assert np.abs(raw - z).max() <= p.params.eps + 1e-6
    assert out.shape == z.shape
