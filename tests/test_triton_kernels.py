"""Each fused Triton op against its torch reference, under the interpreter (TRITON_INTERPRET=1).

Tolerances (design §4): continuous outputs must be within 2x plain PyTorch's error at the same
precision, both measured against a float64 oracle (helpers.assert_within_lowp_error). Sign outputs
are discontinuous: where the oracle's margin (|y - x~| or |g|) exceeds 4x plain PyTorch's error at
that precision, no admissible rounding can flip the sign, so the kernel must agree exactly there;
below that margin either sign is a correct rounding. Exact ties (sign 0) are built so that every
precision computes them exactly. Outputs are poisoned with NaN before each kernel runs.
"""

from __future__ import annotations

import pytest
import torch
from helpers import ACT_FNS, OUT_FNS, assert_within_lowp_error, sign_margin_floor, triton_interpreter_broken

pytest.importorskip("triton")
from advface_fast.kernels import mlp_gemm as K

pytestmark = pytest.mark.skipif(bool(triton_interpreter_broken()), reason=str(triton_interpreter_broken()))

SHAPES = [(1, 37, 129), (33, 129, 64), (70, 64, 200)]  # (batch, in, out): odd, not block multiples


def rnd(*shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def poisoned(*shape, dtype=torch.float32):
    return torch.full(shape, float("nan"), dtype=dtype)


def lowp(t: torch.Tensor, precision: str) -> torch.Tensor:
    """What the kernel's operands are at ``precision`` (tf32 is computed as fp32 by the interpreter)."""
    return t.bfloat16().float() if precision == "bf16" else t.float()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_linear_act(precision, act, m, k, n):
    x, w, b = rnd(m, k, seed=1), rnd(n, k, seed=2, scale=k**-0.5), rnd(n, seed=3, scale=0.1)
    out, pre = poisoned(m, n), poisoned(m, n)
    K.linear_act(x, w, b, out, pre, act=act, slope=0.2, precision=precision)
    a64 = x.double() @ w.double().t() + b.double()
    a_plain = lowp(x, precision) @ lowp(w, precision).t() + b
    assert_within_lowp_error(pre, a64, a_plain)
    assert_within_lowp_error(out, ACT_FNS[act](a64), ACT_FNS[act](a_plain))
    ref = K.linear_act_ref(x, w, b, poisoned(m, n), poisoned(m, n), act=act, slope=0.2, precision=precision)
    assert_within_lowp_error(ref, ACT_FNS[act](a64), ACT_FNS[act](a_plain))  # the _ref twin obeys the same bound


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_linear_act_backward(precision, act, m, k, n):
    # d (m, n_out) @ w (n_out, n_in): here k plays n_out, n plays n_in
    d, w = rnd(m, k, seed=4), rnd(k, n, seed=5, scale=k**-0.5)
    saved = rnd(m, n, seed=6)
    saved[:, ::7] = 0.0  # the activation's kink: relu' = 0, leaky' = slope, as torch decides at 0
    out = poisoned(m, n)
    K.linear_act_backward(d, w, saved, out, act=act, slope=0.2, precision=precision)
    want = K.linear_act_backward_ref(
        d.double(), w.double(), saved.double(), poisoned(m, n).double(), act=act, slope=0.2, precision="fp32"
    )
    plain = K.linear_act_backward_ref(
        lowp(d, precision), lowp(w, precision), saved, poisoned(m, n), act=act, slope=0.2, precision="fp32"
    )
    assert_within_lowp_error(out, want, plain)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_last_layer_l1_sign(precision, out_act, m, k, n):
    h, w, b = rnd(m, k, seed=7), rnd(n, k, seed=8, scale=k**-0.5), rnd(n, seed=9, scale=0.1)
    target = OUT_FNS[out_act](rnd(m, n, seed=10))
    out = poisoned(m, n)
    K.last_layer_l1_sign(h, w, b, target, out, out_act=out_act, precision=precision)
    pre64 = h.double() @ w.double().t() + b.double()
    y64 = OUT_FNS[out_act](pre64)
    plain_y = OUT_FNS[out_act](lowp(h, precision) @ lowp(w, precision).t() + b)
    safe = (y64 - target.double()).abs() > sign_margin_floor(plain_y, y64)
    want = K.last_layer_l1_sign_ref(
        h.double(), w.double(), b.double(), target.double(), poisoned(m, n).double(), out_act=out_act, precision="fp32"
    )
    assert safe.float().mean() > 0.9
    assert torch.equal(torch.sign(out)[safe], torch.sign(want)[safe].float())
    # the magnitude (the output activation's slope) is continuous: within the low-precision bound
    plain = K.last_layer_l1_sign_ref(
        lowp(h, precision), lowp(w, precision), b, target, poisoned(m, n), out_act=out_act, precision="fp32"
    )
    assert_within_lowp_error(out[safe], want[safe], plain[safe])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_last_layer_exact_ties_give_zero(precision):
    """Columns whose weights are 0 have pre-activation = bias exactly in any precision; with the
    target equal to it the L1 sub-gradient is exactly 0 (sign(0) = 0)."""
    m, k, n = 9, 37, 129
    h, w, b = rnd(m, k, seed=11), rnd(n, k, seed=12, scale=k**-0.5), rnd(n, seed=13, scale=0.1)
    tie_cols = torch.arange(0, n, 3)
    w[tie_cols] = 0.0
    target = OUT_FNS["tanh"](rnd(m, n, seed=14))
    target[:, tie_cols] = b[tie_cols]
    out = poisoned(m, n)
    K.last_layer_l1_sign(h, w, b, target, out, out_act="none", precision=precision)
    assert torch.all(out[:, tie_cols] == 0)
    assert torch.all(out.abs().sum(0)[[c for c in range(n) if c % 3]] > 0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
def test_linear_out(precision, out_act):
    m, k, n = 33, 129, 200
    h, w, b = rnd(m, k, seed=15), rnd(n, k, seed=16, scale=k**-0.5), rnd(n, seed=17, scale=0.1)
    out = poisoned(m, n)
    K.linear_out(h, w, b, out, out_act=out_act, precision=precision)
    y64 = OUT_FNS[out_act](h.double() @ w.double().t() + b.double())
    plain = OUT_FNS[out_act](lowp(h, precision) @ lowp(w, precision).t() + b)
    assert_within_lowp_error(out, y64, plain)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("m", "hidden", "dim"), [(1, 129, 37), (33, 64, 37), (70, 200, 129)])
def test_input_grad_sign_step(precision, m, hidden, dim):
    eps, alpha = 0.05, 0.02
    d, w = rnd(m, hidden, seed=18), rnd(hidden, dim, seed=19, scale=hidden**-0.5)
    c = rnd(m, dim, seed=20)
    z = c + eps * (2 * torch.rand(m, dim, generator=torch.Generator().manual_seed(21)) - 1)
    z[:, 1::5] = c[:, 1::5] + eps  # on the boundary (pushed outward they must stay exactly on it)
    z[:, 2::5] = c[:, 2::5] - eps
    if m > 1:
        d[0] = 0.0  # a row whose gradient is exactly 0: sign 0, z must not move
    out = poisoned(m, dim)
    K.input_grad_sign_step(d, w, z, c, out, eps=eps, alpha=alpha, precision=precision)
    g64 = d.double() @ w.double()
    plain_g = lowp(d, precision) @ lowp(w, precision)
    safe = g64.abs() > sign_margin_floor(plain_g, g64)
    want = K.input_grad_sign_step_ref(d, w, z, c, poisoned(m, dim), eps=eps, alpha=alpha, precision="fp32")
    assert torch.equal(out[safe], want[safe])  # same sign -> bit-identical fp32 update
    assert torch.all((out >= c - eps) & (out <= c + eps))  # the fp32 ball, as the kernel computes its bounds
    if m > 1:
        assert torch.equal(out[0], torch.clamp(z[0], c[0] - eps, c[0] + eps))


def test_large_index_offsets_use_int64():
    """Rows 2**30 elements apart: the last row starts past 2**31 elements, where 32-bit offsets wrap.
    The buffer is allocated lazily (only the touched pages become resident)."""
    n = 64
    big = torch.empty(2 * 2**30 + n, dtype=torch.bfloat16)
    out = big.as_strided((3, n), (2**30, 1))
    out.fill_(float("nan"))
    x, w, b = rnd(3, 37, seed=22), rnd(n, 37, seed=23, scale=37**-0.5), rnd(n, seed=24, scale=0.1)
    K.linear_act(x, w, b, out, None, act="relu", slope=0.0, precision="fp32")
    want = torch.relu(x @ w.t() + b).bfloat16()
    assert torch.equal(big[2 * 2**30 : 2 * 2**30 + n], want[2])
    assert torch.equal(big[:n], want[0])
