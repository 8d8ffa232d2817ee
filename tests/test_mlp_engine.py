"""The written-out MLPDecoder loop (backend "mlp") against the autograd reference.

Tolerance argument. With plain weights (ADVFACE_CPU_PACKED=0) the engine runs the very ATen ops
autograd runs for the reference (addmm forward, ``g @ W`` backward, ATen's activation backward
kernels, sign of the difference), in the same order, so it must return the reference's bytes: that
test demands equality. With oneDNN-packed weights (the default on the CPU) the GEMMs sum in
another order (~1e-7 relative), so a step's sign may differ only where the gradient is within that
rounding of zero: identical steps wherever |g| exceeds 1e-4 of the row's largest |g|, and whole
runs within 1e-5 (far below alpha: no step differed), as for the Triton engine. In bf16 it rounds
GEMM operands to 8 bits, which flips near-zero gradients by design; there it must track the fp32
result at least as well as torch's own bf16 (autocast) does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ODD_D, ODD_HIDDEN, ODD_OUT, odd_pair, unit_rows

import advface_fast as af
from advface_fast.engines import mlp_eager as mlp_engine
from advface_fast.engines.mlp_eager import mlp_decode, mlp_pgd, mlp_weights
from advface_fast.engines.reference import l1_input_grad_ref, pgd_ref

D, HIDDEN, OUT = ODD_D, ODD_HIDDEN, ODD_OUT
KW = {"eps": 0.05, "alpha": 0.01, "progress": False, "device": "cpu"}


pair = odd_pair


@pytest.fixture(params=[False, True], ids=["plain", "packed"])
def packed(request, monkeypatch):
    monkeypatch.setenv("ADVFACE_CPU_PACKED", "1" if request.param else "0")
    monkeypatch.setattr(mlp_engine, "_worth_packing", lambda weight, batch: True)  # every layer, any size
    mlp_engine.PLANS.clear()
    yield request.param
    mlp_engine.PLANS.clear()


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
def test_fp32_loop_and_decode_match_the_reference(act, out_act, packed):
    dec, _ = pair(act, out_act)
    dec.eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(33, D, generator=g)
    z0 = z + 0.05 * (2 * torch.rand(33, D, generator=g) - 1)
    target = dec(z)
    packs = mlp_engine.mlp_weights(dec, torch.device("cpu"), "fp32").packed
    assert (packs is not None) == (packed and torch.backends.mkldnn.is_available())
    one, want_one = mlp_pgd(dec, z0, z, target, 0.05, 0.01, 1), pgd_ref(dec, z0, z, target, 0.05, 0.01, 1)
    run, want_run = mlp_pgd(dec, z0, z, target, 0.05, 0.01, 6), pgd_ref(dec, z0, z, target, 0.05, 0.01, 6)
    if not packed:  # the reference's own ops in its order: its bytes
        assert torch.equal(mlp_decode(dec, z), target)
        assert torch.equal(one, want_one) and torch.equal(run, want_run)
        return
    assert (mlp_decode(dec, z) - target).abs().max() < 1e-5
    grad = l1_input_grad_ref(dec, z0, target)
    clear = grad.abs() > 1e-4 * grad.abs().amax(dim=1, keepdim=True)
    assert clear.float().mean() > 0.95
    assert torch.equal(one[clear], want_one[clear])
    assert (run - want_run).abs().max() < 1e-5


@pytest.mark.parametrize("start", ["shadow", "random", "original"])
def test_protect_with_mlp_equals_torch_backend(start):
    dec, enc = pair("gelu")
    z = unit_rows(41, D, seed=2)
    images = np.tanh(np.random.default_rng(4).standard_normal((41, *OUT))).astype(np.float32)
    kw = {"start": start, "steps": 5, "images": images if start == "original" else None, **KW}
    assert (
        np.abs(af.protect(z, dec, enc, backend="mlp", **kw) - af.protect(z, dec, enc, backend="torch", **kw)).max()
        < 1e-5
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_offline_original_start_keeps_exact_ties(precision):
    """decode and the loop share the forward, so at z itself every L1 sign is 0: nothing moves."""
    dec, enc = pair()
    z = unit_rows(9, D, seed=5)
    out = af.protect(z, dec, enc, start="original", steps=3, renorm=False, backend="mlp", precision=precision, **KW)
    np.testing.assert_array_equal(out, z)


def test_bf16_tracks_fp32_like_torch_bf16_does():
    dec, enc = pair(seed=7, hidden=(256, 128))
    z = unit_rows(64, D, seed=8)
    kw = {"start": "random", "steps": 6, "renorm": False, **KW}
    ref = af.protect(z, dec, enc, backend="torch", **kw)
    ours = af.protect(z, dec, enc, backend="mlp", precision="bf16", **kw)
    tb = af.protect(z, dec, enc, backend="torch", precision="bf16", **kw)
    assert np.abs(ours - z).max() <= 0.05 + 1e-7  # the projection stays fp32: inside the ball
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    assert cos(ours - z, ref - z).mean() >= cos(tb - z, ref - z).mean() - 0.03  # the perturbation's direction
    moved, moved_tb = (np.abs(ours - ref) > 1e-3).mean(), (np.abs(tb - ref) > 1e-3).mean()
    assert moved <= 1.25 * moved_tb + 0.05, (moved, moved_tb)
    assert moved < 0.5  # bf16 changes some steps, not most


def test_weight_cache_follows_in_place_updates_and_changes_nothing():
    dec, enc = pair()
    dec.eval().requires_grad_(False)
    z = unit_rows(7, D, seed=9)
    state = {k: v.clone() for k, v in dec.state_dict().items()}
    zt = torch.from_numpy(z.copy())
    first = af.protect(zt, dec, enc, steps=2, backend="mlp", **KW)
    assert torch.equal(zt, torch.from_numpy(z)) and all(torch.equal(v, state[k]) for k, v in dec.state_dict().items())
    w_before = mlp_weights(dec, torch.device("cpu"), "bf16")
    assert mlp_weights(dec, torch.device("cpu"), "bf16") is w_before  # converted once
    with torch.no_grad():
        dec.layers[-1].weight.add_(torch.randn(dec.layers[-1].weight.shape))  # in place: same storage, new version
    assert mlp_weights(dec, torch.device("cpu"), "bf16") is not w_before
    second = af.protect(zt, dec, enc, steps=2, backend="mlp", **KW)
    assert (second - af.protect(zt, dec, enc, steps=2, backend="torch", **KW)).abs().max() < 1e-5
    assert not torch.equal(first, second)
