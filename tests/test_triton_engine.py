"""The whole protection loop on the fused Triton engine against the torch reference, under the
interpreter (TRITON_INTERPRET=1, set in conftest.py).

Tolerance argument (design §4). A step changes an element by +-alpha (before the clamp) according
to the sign of its gradient. In fp32 the engines differ only by summation order (~1e-7 relative),
so a step's sign can differ only where the reference gradient is within that rounding of zero:
the per-step test demands identical steps wherever |g| exceeds 1e-4 of the row's largest |g|
(orders of magnitude above fp32 rounding). Over a whole run a differing step would move an element
by ~alpha; with fp32 we require every element within 1e-5 (far below alpha = 1e-2: no step
differed) and allow the start point's GEMM rounding through the encoder (a few ulps). bf16 rounds
operands to 8 bits, which flips near-zero gradients by design: there the result is compared by
cosine and the fraction of elements that took a different step, against torch's own bf16.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ODD_D, ODD_HIDDEN, ODD_OUT, odd_pair, triton_interpreter_broken, unit_rows

import advface_fast as af
from advface_fast.engines import resolve_backend
from advface_fast.engines.reference import l1_input_grad_ref, pgd_ref

pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(bool(triton_interpreter_broken()), reason=str(triton_interpreter_broken()))

D, HIDDEN, OUT = ODD_D, ODD_HIDDEN, ODD_OUT
KW = {"eps": 0.05, "alpha": 0.01, "progress": False, "device": "cpu"}  # interpreter tests, also on GPU machines


pair = odd_pair


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
def test_one_step_matches_reference_where_the_gradient_is_not_near_zero(act, out_act):
    dec, _ = pair(act, out_act)
    dec.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    triton = resolve_backend("triton", dec, cpu)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(33, D, generator=g)
    z0 = z + 0.05 * (2 * torch.rand(33, D, generator=g) - 1)
    target = triton.decode(dec, z)
    got = triton.pgd(dec, z0, z, target, 0.05, 0.01, 1)
    want = pgd_ref(dec, z0, z, target, 0.05, 0.01, 1)
    grad = l1_input_grad_ref(dec, z0, target)
    clear = grad.abs() > 1e-4 * grad.abs().amax(dim=1, keepdim=True)
    assert clear.float().mean() > 0.95
    assert torch.equal(got[clear], want[clear])


@pytest.mark.parametrize("start", ["shadow", "random"])
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_whole_loop_fp32_matches_reference(start, act):
    dec, enc = pair(act)
    z = unit_rows(33, D, seed=2)
    a = af.protect(z, dec, enc, start=start, steps=6, backend="torch", **KW)
    b = af.protect(z, dec, enc, start=start, steps=6, backend="triton", **KW)
    assert np.abs(a - b).max() < 1e-5


def test_online_original_start_and_batch_one():
    dec, enc = pair()
    z = unit_rows(5, D, seed=3)
    images = np.tanh(np.random.default_rng(4).standard_normal((5, *OUT))).astype(np.float32)
    kw = {"start": "original", "images": images, "steps": 4, "batch_size": 1, **KW}
    a = af.protect(z, dec, enc, backend="torch", **kw)
    b = af.protect(z, dec, enc, backend="triton", **kw)
    assert np.abs(a - b).max() < 1e-5 and np.abs(a - z).max() > 0.01


def test_offline_original_start_keeps_exact_ties():
    """At z itself the engine's forward reproduces its own shadow image bit for bit (same kernels,
    same block configuration), so every L1 sign is exactly 0 and nothing moves, as in the reference."""
    dec, enc = pair()
    z = unit_rows(9, D, seed=5)
    out = af.protect(z, dec, enc, start="original", steps=3, renorm=False, backend="triton", **KW)
    np.testing.assert_array_equal(out, z)


def test_affine_decoder_and_noncontiguous_input():
    dec, enc = pair(hidden=())
    wide = torch.from_numpy(unit_rows(17, 2 * D, seed=6))
    view = wide[:, ::2]
    a = af.protect(view, dec, enc, start="random", steps=3, backend="torch", **KW)
    b = af.protect(view, dec, enc, start="random", steps=3, backend="triton", **KW)
    assert torch.abs(a - b).max() < 1e-5


def test_bf16_tracks_fp32_like_torch_bf16_does():
    dec, enc = pair(seed=7)
    z = unit_rows(40, D, seed=8)
    kw = {"start": "random", "steps": 6, **KW}
    ref = af.protect(z, dec, enc, backend="torch", **kw)
    tri = af.protect(z, dec, enc, backend="triton", precision="bf16", **kw)
    tb = af.protect(z, dec, enc, backend="torch", precision="bf16", **kw)
    cos = lambda a, b: (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)  # noqa: E731
    # Measured on this case: ~35-43% of elements take a different step than fp32 after 6 steps in
    # torch's bf16 and in ours alike (a tiny decoder: few terms per gradient, many near zero).
    assert cos(tri, ref).min() >= cos(tb, ref).min() - 0.02
    assert cos(tri - z, ref - z).mean() >= cos(tb - z, ref - z).mean() - 0.03  # the perturbation's direction
    moved_tri, moved_tb = (np.abs(tri - ref) > 1e-3).mean(), (np.abs(tb - ref) > 1e-3).mean()
    assert moved_tri <= 1.25 * moved_tb + 0.05, (moved_tri, moved_tb)


def test_fused_engine_changes_nothing_it_was_given():
    dec, enc = pair()
    state = {k: v.clone() for k, v in dec.state_dict().items()}
    z = torch.from_numpy(unit_rows(7, D, seed=9))
    z_copy = z.clone()
    af.protect(z, dec, enc, steps=2, backend="triton", **KW)
    assert torch.equal(z, z_copy)
    assert all(torch.equal(v, state[k]) for k, v in dec.state_dict().items())


def test_a_weight_changed_in_place_rebuilds_the_plan():
    """The weight plan is keyed by the parameters' identity and version, as the other engines' are:
    after an in-place change the engine decodes with the new weights, not a stale copy (bf16: the
    plan holds converted copies; fp32 weights on the CPU alias the parameters)."""
    dec, _ = pair()
    dec.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    triton = resolve_backend("triton", dec, cpu)
    z = torch.randn(9, D, generator=torch.Generator().manual_seed(5))
    before = triton.decode(dec, z, "bf16")
    with torch.no_grad():
        dec.layers[-1].weight.mul_(-1.0)  # the bf16 plan holds a converted copy of it
    after = triton.decode(dec, z, "bf16")
    assert (after - before).abs().max() > 0.05
    assert (after - dec(z)).abs().max() < 0.05  # bf16 operands: within bf16's error of the new decoder


def test_a_failed_graph_capture_falls_back_to_the_eager_loop():
    """Where a CUDA graph cannot be captured (here: a CPU-only torch, whose CUDAGraph refuses to be
    built) the Triton loop warns once and runs eagerly with the same numbers, as the NVRTC loop does."""
    from advface_fast.kernels.pgd_mlp import pgd_mlp, plan_for

    dec, _ = pair()
    dec.eval().requires_grad_(False)
    cpu = torch.device("cpu")
    plan = plan_for(dec, cpu, "fp32", use_graphs=True)
    g = torch.Generator().manual_seed(6)
    z = torch.randn(11, D, generator=g)
    z0 = z + 0.05 * (2 * torch.rand(11, D, generator=g) - 1)
    target = dec(z)
    first = pgd_mlp(plan, z0, z, target, 0.05, 0.01, 3)  # eager, and marks the shape warm
    with pytest.warns(RuntimeWarning, match="capture failed"):
        second = pgd_mlp(plan, z0, z, target, 0.05, 0.01, 3)  # would capture: fails, runs eagerly
    assert plan.graph_error is not None
    assert torch.equal(first, second)
    assert torch.equal(pgd_mlp(plan, z0, z, target, 0.05, 0.01, 3), first)  # no further capture attempt
