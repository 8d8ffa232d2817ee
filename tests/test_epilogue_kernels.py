"""The step's elementwise kernels (csrc/epilogues.h; C++ here, CUDA on a GPU) against torch.

Tolerance argument: the kernels follow ATen's formulas operation by operation, so everything but
the transcendentals must be bit-identical: given the same ``y``, the L1-sign gradient must equal
torch's ops on that ``y`` exactly, and relu/leaky_relu derivatives and the bf16 rounding
(round-to-nearest-even) exactly. ``tanh``/``sigmoid``/``gelu`` call the C library (CUDA's on the
GPU) where ATen calls Sleef on the CPU: those may differ by an ulp or two, so they are held to 4
ulps of float32, and a sign against the target must agree wherever ``|y - x|`` exceeds that.
"""

from __future__ import annotations

import pytest
import torch
from helpers import needs_gpu

from advface_fast.engines import extension as _ext
from advface_fast.engines.ops import (
    act_backward_,
    act_backward_ref,
    l1_out_grad_from_output,
    l1_sign_grad_from_output,
    l1_sign_grad_from_output_ref,
    l1_sign_out_grad,
    l1_sign_out_grad_ref,
    out_activation,
    out_activation_ref,
)
from advface_fast.errors import BackendUnavailableError

pytestmark = pytest.mark.skipif(_ext.load() is None, reason="advface_fast._C is not built")
ULP = torch.finfo(torch.float32).eps
DTYPES = [torch.float32, torch.bfloat16]


def _inputs(shape, a_dtype, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    a = (3 * torch.randn(shape, generator=g)).to(a_dtype)
    x = (2 * torch.rand(shape, generator=g) - 1).clamp(-0.999, 0.999)
    return a.to(device), x.to(device)


@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("a_dtype", DTYPES)
def test_out_activation_within_4_ulps(out_act, a_dtype):
    a, _ = _inputs((37, 129), a_dtype)
    got = out_activation(a, out_act, backend="compiled")
    want = out_activation_ref(a, out_act)
    assert got.dtype == torch.float32
    assert ((got - want).abs() <= 4 * ULP * want.abs().clamp_min(1e-30)).all()
    if out_act == "none":
        assert torch.equal(got, want)


@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("a_dtype", DTYPES)
@pytest.mark.parametrize("g_dtype", DTYPES)
def test_l1_sign_out_grad_is_atens_formula(out_act, a_dtype, g_dtype):
    a, x = _inputs((33, 257), a_dtype, seed=1)
    y = out_activation(a, out_act, backend="compiled")
    x[:, ::9] = y[:, ::9]  # exact ties: sign 0, gradient 0
    got = l1_sign_out_grad(a, x, out_act, g_dtype, backend="compiled")
    assert got.dtype == g_dtype
    # ATen's ops on the kernel's own y: the same bytes
    assert torch.equal(got, l1_out_grad_from_output(y, x, out_act).to(g_dtype))
    assert (got[:, ::9] == 0).all()
    # against torch's own y: signs agree wherever the margin exceeds the transcendental's ulps
    want = l1_sign_out_grad_ref(a, x, out_act, g_dtype)
    y_t = out_activation_ref(a, out_act)
    clear = (y_t - x).abs() > 8 * ULP * y_t.abs().clamp_min(1.0)
    assert clear.float().mean() > 0.8
    assert torch.equal(torch.sign(got[clear].float()), torch.sign(want[clear].float()))


@pytest.mark.parametrize("isa", [0, 1, 2])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("g_dtype", DTYPES)
def test_l1_sign_grad_from_output_is_atens_bytes_for_every_isa(isa, out_act, g_dtype):
    """No transcendental: every vector version (baseline, AVX2+FMA, AVX-512) must give ATen's
    bytes, ties (sign 0) and the bf16 rounding included; 37 x 129 leaves a ragged vector tail."""
    ext = _ext.load()
    if isa > ext.cpu_isa():
        pytest.skip(f"this CPU does not have ISA level {isa}")
    a, x = _inputs((37, 129), torch.float32, seed=5)
    y = out_activation_ref(a, out_act)
    x[:, ::5] = y[:, ::5]  # exact ties
    x[0, :4] = torch.tensor([1.0, -1.0, 0.0, -0.0])  # sign(y - x) with y = out_act(...) at the edges
    g = torch.empty(y.shape, dtype=g_dtype)
    ext.l1_sign_grad_from_output_cpu(
        y.data_ptr(),
        x.data_ptr(),
        g.data_ptr(),
        int(g_dtype == torch.bfloat16),
        y.numel(),
        {"none": 0, "tanh": 1, "sigmoid": 2}[out_act],
        isa,
    )
    assert torch.equal(g, l1_out_grad_from_output(y, x, out_act).to(g_dtype))
    assert (g[1:, ::5] == 0).all()  # row 0 has the edge values instead


def test_l1_sign_grad_from_output_op_takes_the_kernel_on_the_cpu():
    a, x = _inputs((64, 768), torch.float32, seed=6)
    y = torch.tanh(a)
    for dtype in DTYPES:
        want = l1_sign_grad_from_output_ref(y, x, "tanh", dtype)
        assert torch.equal(l1_sign_grad_from_output(y, x, "tanh", dtype), want)  # auto: compiled here
        assert torch.equal(l1_sign_grad_from_output(y, x, "tanh", dtype, backend="compiled"), want)
    with pytest.raises(ValueError, match="float32 of one shape"):
        l1_sign_grad_from_output(y, x[:, :5], "tanh", torch.float32)
    with pytest.raises(BackendUnavailableError, match="contiguous"):
        l1_sign_grad_from_output(y.t(), x.t(), "tanh", torch.float32, backend="compiled")
    with pytest.raises(ValueError, match="lacks the requested ISA"):
        _ext.load().l1_sign_grad_from_output_cpu(y.data_ptr(), x.data_ptr(), y.data_ptr(), 0, 4, 1, 99)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("g_dtype", DTYPES)
@pytest.mark.parametrize("a_dtype", DTYPES)
def test_act_backward_matches_aten(act, g_dtype, a_dtype):
    a, _ = _inputs((65, 129), a_dtype, seed=2)
    a[:, ::7] = 0.0  # the kink: relu' and leaky_relu' take their "a <= 0" branch there, as ATen's
    g = torch.randn(65, 129, generator=torch.Generator().manual_seed(3)).to(g_dtype)
    want = act_backward_ref(g, a, act, 0.2)
    got = act_backward_(g.clone(), a, act, 0.2, backend="compiled")
    if act != "gelu":
        assert torch.equal(got, want)
    else:  # erf and exp round differently: cdf + a * pdf (terms <= 1.13) within 8 ulps, times |g|;
        # a bf16 g then adds at most one bf16 ulp (2^-7 relative) of the result
        tol = 8 * ULP * g.float().abs() + (0 if g_dtype == torch.float32 else 2.0**-7 * want.float().abs())
        assert ((got.float() - want.float()).abs() <= tol).all()


def test_bf16_rounding_is_round_to_nearest_even():
    """1.0 * (1 + 2^-8) and 1.0 * (1 + 3 * 2^-8) are exact halfway cases in bf16: RNE rounds the
    first down to 1.0 and the second up to 1 + 2^-6 (round-half-up would give other answers)."""
    for slope, expect in ((1 + 2**-8, 1.0), (1 + 3 * 2**-8, 1 + 2**-6)):
        g = torch.ones(8, dtype=torch.bfloat16)
        a = -torch.ones(8, dtype=torch.bfloat16)  # leaky branch: g * slope
        got = act_backward_(g, a, "leaky_relu", slope, backend="compiled")
        assert torch.equal(got, torch.full((8,), expect, dtype=torch.bfloat16))
        assert torch.equal(got, act_backward_ref(torch.ones(8, dtype=torch.bfloat16), a, "leaky_relu", slope))


def test_auto_keeps_torch_on_the_cpu_and_errors_are_named():
    a, x = _inputs((4, 5), torch.float32)
    assert torch.equal(l1_sign_out_grad(a, x, "tanh", torch.float32), l1_sign_out_grad_ref(a, x, "tanh", torch.float32))
    with pytest.raises(ValueError, match="target must be float32"):
        l1_sign_out_grad(a, x.double(), "tanh", torch.float32)
    with pytest.raises(BackendUnavailableError, match="float32 and bfloat16"):
        out_activation(a.double(), "tanh", backend="compiled")
    with pytest.raises(BackendUnavailableError, match="contiguous"):
        act_backward_(torch.randn(5, 4).t(), a, "relu", 0.0, backend="compiled")
    with pytest.raises(ValueError, match="one shape"):
        act_backward_(torch.randn(4, 4), a, "relu", 0.0)


@needs_gpu
@pytest.mark.parametrize("a_dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 1])
def test_cuda_kernels_match_torch_on_the_gpu(a_dtype, offset):
    """offset 0: 16-byte packs over the body and a 1-element tail (513 x 129 = 8 x 8271 + 1);
    offset 1: misaligned views, the one-element-per-thread path throughout."""
    if not _ext.build_info()["cuda"]:
        pytest.fail("on a GPU machine the extension must be built with its CUDA part (nvcc present)")
    a, x = _inputs((513 * 129 + offset,), a_dtype, seed=4, device="cuda")
    a, x = a[offset:], x[offset:]
    for out_act in ("tanh", "sigmoid", "none"):
        y = out_activation(a, out_act, backend="compiled")
        want = out_activation_ref(a, out_act)
        assert ((y - want).abs() <= 4 * ULP * want.abs().clamp_min(1e-30)).all()
        for g_dtype in DTYPES:
            got = l1_sign_out_grad(a, x, out_act, g_dtype, backend="compiled")
            assert torch.equal(got, l1_out_grad_from_output(y, x, out_act).to(g_dtype))
    g = torch.randn(513 * 129 + offset, device="cuda").to(a_dtype)[offset:]
    for act in ("relu", "leaky_relu"):
        assert torch.equal(act_backward_(g.clone(), a, act, 0.2, backend="compiled"), act_backward_ref(g, a, act, 0.2))
