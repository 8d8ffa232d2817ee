"""The TMA (tensor-descriptor, persistent) GEMM kernel of ``kernels/mlp_gemm_tma.py`` under the
interpreter, forced on with ``forced("tma")``: each op against the float64 oracle with the bounds
of test_triton_kernels.py (design §4), the tails of M, N and K that the descriptors zero-fill and
clip, the selection rules, and the whole bf16 loop. Every test checks that the TMA kernel really
ran (a recording wrapper around its launcher), so a silent fall-back to the pointer kernel fails.

Two places run it: the interpreter on CPUs (CI), and, with ``TRITON_INTERPRET=0`` on a GPU of compute
capability >= 9, the compiled kernel (``benchmarks/gpu_check.sh`` runs this file so), where the
tensors live on the GPU and the oracles stay on the CPU in float64.

Under the interpreter the kernel runs one 32x64x64 config with the split epilogue (two 32-column
halves) and the persistent loop over 3 programs: the shapes below leave partial tiles in M, N and K,
and at n = 200 a tile whose second half lies wholly past the last column.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (
    ACT_FNS,
    OUT_FNS,
    LinearEncoder,
    assert_within_lowp_error,
    sign_margin_floor,
    triton_interpreter_broken,
    unit_rows,
)

import advface_fast as af

pytest.importorskip("triton")
from advface_fast.kernels import mlp_gemm as K
from advface_fast.kernels import mlp_gemm_tma as T
from advface_fast.kernels import pgd_mlp as P
from advface_fast.kernels._common import is_interpreting


def _where() -> tuple[str | None, str]:
    """(device, why not) for this process: the interpreter on the CPU, or a compiled Hopper+ GPU."""
    if T.TensorDescriptor is None:
        return None, "this Triton has no host tensor descriptors"
    if is_interpreting():
        broken = triton_interpreter_broken()
        return (None, broken) if broken else ("cpu", "")
    if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9:
        return "cuda", ""
    return None, "compiled Triton needs a GPU of compute capability >= 9 for TMA (TRITON_INTERPRET=0 given)"


DEVICE, WHY_NOT = _where()
pytestmark = pytest.mark.skipif(DEVICE is None, reason=WHY_NOT)

SHAPES = [(1, 40, 64), (33, 136, 200), (70, 64, 72)]  # (batch, in, out): multiples of 8, not of the blocks


@pytest.fixture
def tma_launches(monkeypatch):
    """Forces the TMA kernel and records each launch it ran (its epilogue number)."""
    calls: list[int] = []
    real = T.launch

    def recording(*args, **kwargs):
        ran = real(*args, **kwargs)
        if ran:
            calls.append(kwargs["epi"])
        return ran

    monkeypatch.setattr(T, "launch", recording)
    with T.forced("tma"):
        yield calls


def rnd(*shape, seed, scale=1.0, dtype=torch.bfloat16):
    """Random data made on the CPU, the same on every machine (``run`` moves it to the test device)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def poisoned(*shape, dtype=torch.float32, device=None):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def run(op, *args, **kwargs) -> torch.Tensor:
    """``op`` on the test device: tensor arguments moved there, its result brought back to the CPU."""
    return op(*[a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args], **kwargs).cpu()


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_linear_act(tma_launches, act, out_dtype, m, k, n):
    x, w, b = rnd(m, k, seed=1), rnd(n, k, seed=2, scale=k**-0.5), rnd(n, seed=3, scale=0.1, dtype=torch.float32)
    pre_dev = poisoned(m, n, dtype=out_dtype, device=DEVICE)
    out = run(K.linear_act, x, w, b, poisoned(m, n, dtype=out_dtype), pre_dev, act=act, slope=0.2, precision="bf16")
    pre = pre_dev.cpu()
    assert tma_launches == [K.EPI_ACT]
    a64 = x.double() @ w.double().t() + b.double()
    a_plain = (x.float() @ w.float().t() + b).to(out_dtype)  # torch's fp32-accumulated GEMM, stored alike
    assert_within_lowp_error(pre, a64, a_plain)
    assert_within_lowp_error(out, ACT_FNS[act](a64), ACT_FNS[act](a_plain.float()).to(out_dtype))


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_linear_act_backward(tma_launches, act, m, k, n):
    """``d @ W`` reads W row-major: the B descriptor that is not transposed."""
    d, w = rnd(m, k, seed=4), rnd(k, n, seed=5, scale=k**-0.5)
    saved = rnd(m, n, seed=6)
    saved[:, ::7] = 0.0  # the activation's kink
    out = run(K.linear_act_backward, d, w, saved, poisoned(m, n, dtype=torch.bfloat16), act=act, slope=0.2,
              precision="bf16")  # fmt: skip
    assert tma_launches == [K.EPI_BWD]
    want = K.linear_act_backward_ref(
        d.double(), w.double(), saved.double(), poisoned(m, n).double(), act=act, slope=0.2, precision="fp32"
    )
    plain = K.linear_act_backward_ref(d.float(), w.float(), saved.float(), poisoned(m, n), act=act, slope=0.2,
                                      precision="fp32").bfloat16()  # fmt: skip
    assert_within_lowp_error(out, want, plain)


@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
@pytest.mark.parametrize("target_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_last_layer_l1_sign(tma_launches, out_act, target_dtype, m, k, n):
    h, w, b = rnd(m, k, seed=7), rnd(n, k, seed=8, scale=k**-0.5), rnd(n, seed=9, scale=0.1, dtype=torch.float32)
    target = OUT_FNS[out_act](torch.randn(m, n, generator=torch.Generator().manual_seed(10))).to(target_dtype)
    out = run(K.last_layer_l1_sign, h, w, b, target, poisoned(m, n, dtype=torch.bfloat16), out_act=out_act,
              precision="bf16")  # fmt: skip
    assert tma_launches == [K.EPI_LAST]
    pre64 = h.double() @ w.double().t() + b.double()
    y64 = OUT_FNS[out_act](pre64)
    plain_y = OUT_FNS[out_act](h.float() @ w.float().t() + b)
    safe = (y64 - target.double()).abs() > sign_margin_floor(plain_y, y64)
    want = K.last_layer_l1_sign_ref(
        h.double(), w.double(), b.double(), target.double(), poisoned(m, n).double(), out_act=out_act, precision="fp32"
    )
    assert safe.float().mean() > 0.9
    assert torch.equal(torch.sign(out.float())[safe], torch.sign(want)[safe].float())
    plain = K.last_layer_l1_sign_ref(
        h.float(), w.float(), b, target.float(), poisoned(m, n), out_act=out_act, precision="fp32"
    ).bfloat16()
    assert_within_lowp_error(out[safe], want[safe], plain[safe])


def test_exact_ties_give_zero(tma_launches):
    m, k, n = 9, 40, 136
    h, w, b = rnd(m, k, seed=11), rnd(n, k, seed=12, scale=k**-0.5), rnd(n, seed=13, scale=0.1, dtype=torch.float32)
    tie_cols = torch.arange(0, n, 3)
    w[tie_cols] = 0.0
    target = torch.tanh(torch.randn(m, n, generator=torch.Generator().manual_seed(14)))
    target[:, tie_cols] = b[tie_cols]
    out = run(K.last_layer_l1_sign, h, w, b, target, poisoned(m, n, dtype=torch.bfloat16), out_act="none",
              precision="bf16")  # fmt: skip
    assert tma_launches == [K.EPI_LAST]
    assert torch.all(out[:, tie_cols] == 0)
    assert torch.all(out.float().abs().sum(0)[[c for c in range(n) if c % 3]] > 0)


@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
def test_decode_then_last_layer_at_the_same_input_gives_all_zero_signs(tma_launches, out_act):
    """The loop's start="original" invariant: decode (EPI_OUT) and the last layer (EPI_LAST) share
    kernel and block sizes, so the step recomputes the decoded image bit for bit and every L1 sign is 0."""
    m, k, n = 33, 136, 200
    h, w, b = rnd(m, k, seed=30), rnd(n, k, seed=31, scale=k**-0.5), rnd(n, seed=32, scale=0.1, dtype=torch.float32)
    image = run(K.linear_out, h, w, b, poisoned(m, n), out_act=out_act, precision="bf16")
    y64 = OUT_FNS[out_act](h.double() @ w.double().t() + b.double())
    assert_within_lowp_error(image, y64, OUT_FNS[out_act](h.float() @ w.float().t() + b))
    s = run(K.last_layer_l1_sign, h, w, b, image, poisoned(m, n, dtype=torch.bfloat16), out_act=out_act,
            precision="bf16")  # fmt: skip
    assert tma_launches == [K.EPI_OUT, K.EPI_LAST]
    assert torch.count_nonzero(s) == 0


@pytest.mark.parametrize(("m", "hidden", "dim"), [(1, 136, 40), (33, 64, 72), (70, 200, 136)])
def test_input_grad_sign_step(tma_launches, m, hidden, dim):
    eps, alpha = 0.05, 0.02
    d, w = rnd(m, hidden, seed=18), rnd(hidden, dim, seed=19, scale=hidden**-0.5)
    c = torch.randn(m, dim, generator=torch.Generator().manual_seed(20))
    z = c + eps * (2 * torch.rand(m, dim, generator=torch.Generator().manual_seed(21)) - 1)
    z[:, 1::5] = c[:, 1::5] + eps  # on the boundary
    z[:, 2::5] = c[:, 2::5] - eps
    if m > 1:
        d[0] = 0.0  # gradient exactly 0: sign 0, z must not move
    out = run(K.input_grad_sign_step, d, w, z, c, poisoned(m, dim), eps=eps, alpha=alpha, precision="bf16")
    assert tma_launches == [K.EPI_STEP]
    g64 = d.double() @ w.double()
    safe = g64.abs() > sign_margin_floor(d.float() @ w.float(), g64)
    want = K.input_grad_sign_step_ref(d.float(), w.float(), z, c, poisoned(m, dim), eps=eps, alpha=alpha,
                                      precision="fp32")  # fmt: skip
    assert safe.float().mean() > 0.9
    assert torch.equal(out[safe], want[safe])  # same sign -> bit-identical fp32 update
    assert torch.all((out >= c - eps) & (out <= c + eps))
    if m > 1:
        assert torch.equal(out[0], torch.clamp(z[0], c[0] - eps, c[0] + eps))


def test_rows_far_apart_are_addressed_in_64_bits(tma_launches):
    """Output rows 2**30 elements apart (the last starts past 2**31): descriptors carry 64-bit strides.
    The buffer is allocated lazily (only the touched pages become resident)."""
    n = 64
    big = torch.empty(2 * 2**30 + n, dtype=torch.bfloat16, device=DEVICE)
    out = big.as_strided((3, n), (2**30, 1))
    out.fill_(float("nan"))
    x, w, b = rnd(3, 40, seed=22), rnd(n, 40, seed=23, scale=40**-0.5), rnd(n, seed=24, scale=0.1, dtype=torch.float32)
    K.linear_act(x.to(DEVICE), w.to(DEVICE), b.to(DEVICE), out, None, act="relu", slope=0.0, precision="bf16")
    big = torch.stack([big[row * 2**30 : row * 2**30 + n] for row in range(3)]).cpu()
    assert tma_launches == [K.EPI_ACT]
    want = torch.relu(x.double() @ w.double().t() + b.double())
    plain = torch.relu(x.float() @ w.float().t() + b).bfloat16()
    for row in range(3):
        assert_within_lowp_error(big[row], want[row], plain[row])


@pytest.mark.parametrize(
    "why",
    ["odd n", "odd k", "fp32 operand", "fp32 precision", "pointer mode", "unaligned row stride"],
)
def test_what_stays_on_the_pointer_kernel(tma_launches, why):
    m, k, n = 5, 40, 64
    x, w, b = rnd(m, k, seed=25), rnd(n, k, seed=26, scale=k**-0.5), rnd(n, seed=27, dtype=torch.float32)
    precision = "bf16"
    if why == "odd n":
        w, b = w[:63], b[:63]
        n = 63
    elif why == "odd k":
        x, w = x[:, :37].contiguous(), w[:, :37].contiguous()
    elif why == "fp32 operand":
        x = x.float()
    elif why == "fp32 precision":
        precision = "fp32"
    elif why == "unaligned row stride":  # a (5, 40) view of rows 44 elements (88 bytes) apart
        x = rnd(m, 44, seed=28)[:, :40]
    with T.forced("pointer" if why == "pointer mode" else "tma"):
        out = run(K.linear_act, x, w, b, poisoned(m, n, dtype=torch.bfloat16), None, act="relu", slope=0.0,
                  precision=precision)  # fmt: skip
    assert tma_launches == []
    assert not torch.isnan(out).any()


def test_mode_names_are_checked(monkeypatch):
    monkeypatch.setenv("ADVFACE_TRITON_GEMM", "wgmma")
    with pytest.raises(ValueError, match="ADVFACE_TRITON_GEMM='wgmma'"):
        T.mode()
    with pytest.raises(ValueError, match="not one of"):
        T.forced("fast")
    monkeypatch.setenv("ADVFACE_TRITON_GEMM", "pointer")
    assert T.mode() == "pointer"
    with T.forced("tma"):
        assert T.mode() == "tma"
    assert T.mode() == "pointer"


def test_auto_takes_it_on_hopper_gpus_and_never_in_the_interpreter(monkeypatch):
    monkeypatch.delenv("ADVFACE_TRITON_GEMM", raising=False)
    x = torch.zeros(8, 64, dtype=torch.bfloat16, device=DEVICE)
    assert T.mode() == "auto"
    if DEVICE == "cuda":  # auto takes it on Hopper and newer
        assert T.eligible(x, torch.zeros(64, 64, dtype=torch.bfloat16, device=DEVICE), x, [], "bf16")
        return
    assert not T.eligible(x, torch.zeros(64, 64, dtype=torch.bfloat16), x, [], "bf16")
    with T.forced("tma"):
        assert T.eligible(x, torch.zeros(64, 64, dtype=torch.bfloat16, device=DEVICE), x, [], "bf16")


# --- the whole loop ------------------------------------------------------------------------------
# Every GEMM of the bf16 loop takes the TMA kernel but the first layer's forward, whose input is the
# fp32 feature (rounded inside the pointer kernel).

LOOP_D, LOOP_HIDDEN, LOOP_OUT = 40, [136, 64], (3, 8, 8)  # multiples of 8, not of the blocks
LOOP_KW = {"eps": 0.05, "alpha": 0.01, "progress": False, "device": DEVICE}


def _loop_pair(seed: int):
    torch.manual_seed(seed)
    dec = af.MLPDecoder(LOOP_D, LOOP_HIDDEN, LOOP_OUT, act="leaky_relu", out_act="tanh")
    return dec, LinearEncoder(int(np.prod(LOOP_OUT)), LOOP_D, seed + 1)


def test_bf16_loop_on_tma_tracks_fp32_like_torch_bf16_does(tma_launches):
    dec, enc = _loop_pair(seed=40)
    z = unit_rows(40, LOOP_D, seed=41)
    kw = {"start": "random", "steps": 6, **LOOP_KW}
    tri = af.protect(z, dec, enc, backend="triton", precision="bf16", **kw)
    assert set(tma_launches) == {K.EPI_ACT, K.EPI_LAST, K.EPI_BWD, K.EPI_STEP, K.EPI_OUT}
    ref = af.protect(z, dec, enc, backend="torch", **kw)
    tb = af.protect(z, dec, enc, backend="torch", precision="bf16", **kw)

    def cos(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    # the same criteria as test_triton_engine's pointer-kernel loop
    assert cos(tri, ref).min() >= cos(tb, ref).min() - 0.02
    assert cos(tri - z, ref - z).mean() >= cos(tb - z, ref - z).mean() - 0.03
    moved_tri, moved_tb = (np.abs(tri - ref) > 1e-3).mean(), (np.abs(tb - ref) > 1e-3).mean()
    assert moved_tri <= 1.25 * moved_tb + 0.05, (moved_tri, moved_tb)


def test_bf16_loop_on_tma_from_its_own_shadow_image_stays_put(tma_launches):
    """From z itself, with the shadow image the engine decoded (kept in fp32: a bf16-stored target is
    a rounding away from the image the step recomputes), every L1 sign is exactly 0 and nothing moves."""
    dec, _ = _loop_pair(seed=42)
    dec.eval().requires_grad_(False)
    plan = P.plan_for(dec, torch.device(DEVICE), "bf16", target_bf16=False)
    z = torch.from_numpy(unit_rows(9, LOOP_D, seed=43)).to(DEVICE)
    image = P.decode_mlp(plan, z)
    out = P.pgd_mlp(plan, z, z, image, eps=0.05, alpha=0.01, steps=3)
    assert K.EPI_OUT in tma_launches and K.EPI_LAST in tma_launches and K.EPI_STEP in tma_launches
    assert torch.equal(out, z)


# --- every config, not only the one the autotuner picks -------------------------------------------
# On a GPU, large enough for many tiles per program (persistent configs walk > 1 tile each on up to
# 132 SMs: 33 x 5 tiles of 128x256) with tails in M, N and K; under the interpreter its one config.
BIG = (4100, 520, 1032) if DEVICE == "cuda" else (70, 136, 200)


def _cases(m: int, k: int, n: int) -> dict:
    """Per epilogue: the launch's tensors (on the CPU) and how to judge the output against fp64."""
    x, w = rnd(m, k, seed=50), rnd(n, k, seed=51, scale=k**-0.5)
    b = rnd(n, seed=52, scale=0.1, dtype=torch.float32)
    target = torch.tanh(torch.randn(m, n, generator=torch.Generator().manual_seed(53))).bfloat16()
    wb = rnd(k, n, seed=54, scale=k**-0.5)  # (K, N) row-major: the backward's and the step's B
    saved = rnd(m, n, seed=55)
    c = torch.randn(m, n, generator=torch.Generator().manual_seed(56))
    z = c + 0.05 * (2 * torch.rand(m, n, generator=torch.Generator().manual_seed(57)) - 1)
    fwd64 = x.double() @ w.double().t() + b.double()
    bwd64 = x.double() @ wb.double()
    gelu, tanh = torch.nn.functional.gelu, torch.tanh
    return {
        "forward gelu": dict(
            b_mat=w.t(), out=torch.bfloat16, epi=K.EPI_ACT, act="gelu", bias=b,
            oracle=gelu(fwd64), plain=gelu(x.float() @ w.float().t() + b).bfloat16(),
        ),
        "last layer": dict(
            b_mat=w.t(), out=torch.bfloat16, epi=K.EPI_LAST, out_act="tanh", bias=b, aux=target,
            sign_of=tanh(fwd64) - target.double(), plain=tanh(x.float() @ w.float().t() + b),
            oracle=1 - tanh(fwd64) ** 2,
        ),
        "backward": dict(
            b_mat=wb, out=torch.bfloat16, epi=K.EPI_BWD, act="leaky_relu", aux=saved,
            oracle=bwd64 * torch.where(saved.double() > 0, 1.0, 0.2),
            plain=((x.float() @ wb.float()) * torch.where(saved.float() > 0, 1.0, 0.2)).bfloat16(),
        ),
        "sign step": dict(
            b_mat=wb, out=torch.float32, epi=K.EPI_STEP, aux=z, aux2=c, step_of=bwd64, plain=x.float() @ wb.float(),
        ),
        "decode": dict(
            b_mat=w.t(), out=torch.float32, epi=K.EPI_OUT, out_act="tanh", bias=b,
            oracle=tanh(fwd64), plain=tanh(x.float() @ w.float().t() + b),
        ),
    }, x  # fmt: skip


@pytest.mark.parametrize("case", ["forward gelu", "last layer", "backward", "sign step", "decode"])
@pytest.mark.parametrize("config", T.configs(), ids=lambda c: "-".join(str(v) for v in c.kwargs.values()))
def test_every_config_against_the_oracle(case, config):
    from triton.runtime.errors import OutOfResources

    m, k, n = BIG
    cases, x = _cases(m, k, n)
    cs = cases[case]
    eps, alpha = 0.05, 0.02
    out = poisoned(m, n, dtype=cs["out"], device=DEVICE)
    pre = poisoned(m, n, dtype=torch.bfloat16, device=DEVICE) if case == "forward gelu" else None
    dev = {key: cs[key].to(DEVICE) if key in cs else None for key in ("bias", "aux", "aux2")}
    try:
        T.launch(
            x.to(DEVICE), cs["b_mat"].to(DEVICE), out, epi=cs["epi"], act=K.ACT_CODES[cs.get("act", "relu")],
            out_act=K.OUT_ACT_CODES[cs.get("out_act", "none")], pre=pre, slope=0.2, eps=eps, alpha=alpha,
            config=config, **dev,
        )  # fmt: skip
    except OutOfResources as exc:  # this config does not fit this epilogue (aot_check lists which)
        pytest.skip(f"does not fit: {exc}")
    got = out.cpu()
    if case == "last layer":  # sign * tanh': exact sign where the margin clears rounding, slope within bound
        margin = cs["sign_of"]
        safe = margin.abs() > sign_margin_floor(cs["plain"], margin + cases["last layer"]["aux"].double())
        assert safe.float().mean() > 0.9
        assert torch.equal(torch.sign(got.float())[safe], torch.sign(margin)[safe].float())
        want = torch.sign(margin) * cs["oracle"]
        assert_within_lowp_error(got[safe], want[safe], (torch.sign(margin) * (1 - cs["plain"] ** 2))[safe].bfloat16())
    elif case == "sign step":
        g64 = cs["step_of"]
        safe = g64.abs() > sign_margin_floor(cs["plain"], g64)
        z, c = cs["aux"], cs["aux2"]
        want = torch.clamp(z + alpha * torch.sign(g64).float(), c - eps, c + eps)
        assert safe.float().mean() > 0.9
        assert torch.equal(got[safe], want[safe])
        assert torch.all((got >= c - eps) & (got <= c + eps))
    else:
        assert_within_lowp_error(got, cs["oracle"], cs["plain"])
    if pre is not None:
        fwd64 = x.double() @ cs["b_mat"].double() + cs["bias"].double()
        assert_within_lowp_error(pre.cpu(), fwd64, (x.float() @ cs["b_mat"].float() + cs["bias"]).bfloat16())
