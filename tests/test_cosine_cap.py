"""The recognition-aware variant's mechanics: the cap holds, the steps ascend the decoder's loss, rows
are independent of their batch, bad budgets are refused."""

from __future__ import annotations

import pytest
import torch

from advface_fast.eval.cosine_cap import cap_project, cosine_cap
from advface_fast.models.decoders import MLPDecoder


def _decoder(dim: int = 24) -> torch.nn.Module:
    torch.manual_seed(0)
    return MLPDecoder(dim, [64], (3, 6, 6)).eval().requires_grad_(False)


def _templates(n: int = 40, dim: int = 24, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, dim, generator=g) * scale


def test_cap_project_keeps_inside_rows_and_puts_outside_rows_on_the_rim():
    u0 = torch.nn.functional.normalize(_templates(), dim=1)
    near = torch.nn.functional.normalize(u0 + 0.01 * _templates(), dim=1)
    far = torch.nn.functional.normalize(_templates(scale=1.0).flip(0), dim=1)
    assert torch.equal(cap_project(near, u0, 0.5), near)
    out = cap_project(far, u0, 0.9)
    cos = (out * u0).sum(1)
    outside = (far * u0).sum(1) < 0.9
    assert outside.sum() > 30
    # float32 rounding of a unit vector's dot product: a few ulps of 1
    assert torch.allclose(cos[outside], torch.full_like(cos[outside], 0.9), atol=1e-5)
    assert torch.allclose(out.norm(dim=1), torch.ones(len(out)), atol=1e-5)


@pytest.mark.parametrize("min_cosine", [0.98, 0.9, 0.6])
def test_every_row_stays_in_the_cap_at_its_own_norm(min_cosine):
    z = _templates(scale=7.0)
    out = cosine_cap(_decoder(), z, min_cosine, steps=6)
    cos = torch.nn.functional.cosine_similarity(out, z, dim=1)
    assert (cos >= min_cosine - 1e-5).all()
    assert torch.allclose(out.norm(dim=1), z.norm(dim=1), rtol=1e-5)
    # the steps spend the budget: most rows end on the rim
    assert (cos < min_cosine + 1e-3).float().mean() > 0.5


def test_the_steps_move_the_decoder_output_further_than_the_random_start():
    dec, z = _decoder(), _templates()
    u0 = torch.nn.functional.normalize(z, dim=1)
    start = cosine_cap(dec, z, 0.9, steps=0)
    moved = cosine_cap(dec, z, 0.9, steps=10)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return (dec(torch.nn.functional.normalize(v, dim=1)) - dec(u0)).abs().flatten(1).sum(1)

    assert loss(moved).mean() > 1.5 * loss(start).mean()
    assert (loss(moved) > loss(start)).float().mean() > 0.9


def test_a_rows_result_does_not_depend_on_its_batch():
    dec, z = _decoder(), _templates(n=9)
    ids = torch.arange(100, 109)
    whole = cosine_cap(dec, z, 0.9, row_ids=ids)
    alone = torch.cat([cosine_cap(dec, z[i : i + 1], 0.9, row_ids=ids[i : i + 1]) for i in range(9)])
    # GEMM blocking differs with the batch: float32 rounding, amplified by at most 10 steps
    assert torch.allclose(whole, alone, atol=1e-4)
    assert not torch.allclose(whole, cosine_cap(dec, z, 0.9, row_ids=ids + 1), atol=1e-2)  # the start is per id


@pytest.mark.parametrize("bad", [1.0, -1.0, 1.5, float("nan")])
def test_a_budget_outside_the_open_interval_is_refused(bad):
    with pytest.raises(ValueError, match="min_cosine"):
        cosine_cap(_decoder(), _templates(), bad)


def test_zero_or_non_finite_rows_are_refused():
    z = _templates()
    z[3] = 0
    with pytest.raises(ValueError, match="non-zero"):
        cosine_cap(_decoder(), z, 0.9)
    z[3] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        cosine_cap(_decoder(), z, 0.9)
