"""The AMX bf16 GEMM (csrc/amx_gemm_cpu.cpp) against its reference, and the mlp engine on it.

Tolerance argument. ``amx_linear`` multiplies bf16 values (exact in fp32) and sums in fp32 in
another order than ``amx_linear_ref``'s matmul (any M: a last partial block of rows runs
zero-padded). On small integers every partial sum is an exact integer below 2^24, so any order
gives the same sum and the results must be equal, in fp32 and after the bf16 rounding. On random
data two fp32 sums of K products differ by at most 2 (K - 1) u sum|a_k b_k| (u = 2^-24, one bound
per order); rounded to bf16 they may then differ by one bf16 ulp where the sum sits near a
rounding boundary. In the loop, that order changes a step
only where a gradient is within that rounding of zero, as for oneDNN's packed GEMMs.
"""

from __future__ import annotations

import pytest
import torch
from helpers import unit_rows

import advface_fast as af
from advface_fast.engines import mlp_eager as mlp_engine
from advface_fast.engines import ops

REASON = ops.amx_unavailable_reason()
needs_amx = pytest.mark.skipif(REASON is not None, reason=f"needs AMX-BF16: {REASON}")
SHAPES = [(32, 32, 32), (64, 128, 256), (96, 64, 96), (64, 768, 256), (1, 128, 256), (5, 32, 64), (100, 64, 96)]


def test_pack_puts_each_element_where_the_kernel_reads_it():
    k, n = 64, 96
    b = torch.arange(k * n, dtype=torch.float32).reshape(k, n).bfloat16()  # distinct where exact (< 256)
    flat = ops.amx_pack(b).reshape(-1)
    for kk, nn in [(0, 0), (1, 0), (0, 1), (31, 15), (32, 16), (63, 95), (5, 40)]:
        at = ((nn // 16) * (k // 32) + kk // 32) * 512 + ((kk % 32) // 2) * 32 + (nn % 16) * 2 + kk % 2
        assert flat[at] == b[kk, nn]
    with pytest.raises(ValueError, match="multiples of 32"):
        ops.amx_pack(torch.zeros(48, 32, dtype=torch.bfloat16))


@needs_amx
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_exact_on_small_integers(m, k, n, out_dtype, with_bias):
    g = torch.Generator().manual_seed(m + k + n)
    a = torch.randint(-4, 5, (m, k), generator=g).bfloat16()
    b = torch.randint(-4, 5, (k, n), generator=g).bfloat16()
    bias = torch.randint(-9, 10, (n,), generator=g).float() if with_bias else None
    got = ops.amx_linear(a, ops.amx_pack(b), n, bias, out_dtype)
    assert got.dtype == out_dtype and got.shape == (m, n)
    assert torch.equal(got, ops.amx_linear_ref(a, b, bias, out_dtype))


@needs_amx
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_random_data_within_the_summation_order_bound(m, k, n):
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(m, k, generator=g).bfloat16(), torch.randn(k, n, generator=g).bfloat16()
    bias = torch.randn(n, generator=g)
    got = ops.amx_linear(a, ops.amx_pack(b), n, bias, torch.float32)
    want = ops.amx_linear_ref(a, b, bias, torch.float32)
    bound = 2 * (k - 1) * 2.0**-24 * (a.float().abs() @ b.float().abs() + bias.abs()) + 1e-30
    assert ((got - want).abs() <= bound).all()
    got16 = ops.amx_linear(a, ops.amx_pack(b), n, bias, torch.bfloat16).float()
    ulp = 2.0 ** (torch.frexp(want)[1].float() - 8)  # one bf16 ulp at the value's binade
    assert ((got16 - want.bfloat16().float()).abs() <= ulp).all()


@needs_amx
def test_refuses_what_it_cannot_run():
    a, bp = torch.zeros(64, 32, dtype=torch.bfloat16), ops.amx_pack(torch.zeros(32, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="multiples of 32"):  # the C++ check, through pybind11
        ops.amx_linear(
            torch.zeros(4, 48, dtype=torch.bfloat16),
            torch.zeros(48 * 32, dtype=torch.bfloat16),
            32,
            None,
            torch.float32,
        )
    with pytest.raises(ValueError, match="contiguous bfloat16"):
        ops.amx_linear(a.float(), bp, 32, None, torch.float32)
    with pytest.raises(ValueError, match="amx_pack"):
        ops.amx_linear(a, bp, 64, None, torch.float32)
    with pytest.raises(ValueError, match="bias"):
        ops.amx_linear(a, bp, 32, torch.zeros(32, dtype=torch.bfloat16), torch.float32)
    with pytest.raises(ValueError, match="out_dtype"):
        ops.amx_linear(a, bp, 32, None, torch.float16)


def _decoder(seed=0):
    torch.manual_seed(seed)
    return af.MLPDecoder(64, [128, 96], (2, 8, 8))  # every size a multiple of 32: every layer on AMX


@needs_amx
def test_engine_takes_amx_for_small_batches_and_keeps_ties_exact(monkeypatch):
    monkeypatch.setenv("ADVFACE_CPU_AMX", "1")
    dec = _decoder().eval().requires_grad_(False)
    w = mlp_engine.mlp_weights(dec, torch.device("cpu"), "bf16")
    assert w.amx is not None and all(p is not None for p in w.amx)
    assert mlp_engine.mlp_weights(dec, torch.device("cpu"), "fp32").amx is None  # fp32 stays on oneDNN/ATen
    calls = []
    real = mlp_engine.amx_linear
    monkeypatch.setattr(mlp_engine, "amx_linear", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    z = torch.from_numpy(unit_rows(64, 64, seed=3))
    # start="original": the decode and the loop's forward are the same GEMMs, so every L1 sign is 0
    still = af.protect(z, dec, start="original", steps=3, renorm=False, precision="bf16", progress=False, device="cpu")
    assert torch.equal(still, z)
    assert calls and all(s[0] == 64 for s in calls)
    calls.clear()
    tail = torch.from_numpy(unit_rows(40, 64, seed=6))  # a partial block of rows: the kernel pads it
    assert torch.equal(
        af.protect(tail, dec, start="original", steps=2, renorm=False, precision="bf16", progress=False, device="cpu"),
        tail,
    )
    assert calls and all(s[0] == 40 for s in calls)
    calls.clear()
    af.protect(
        torch.from_numpy(unit_rows(256, 64, seed=4)),
        dec,
        precision="bf16",
        progress=False,
        device="cpu",
        batch_size=256,
    )
    assert not calls  # 256 rows: oneDNN (faster there)


@needs_amx
def test_bf16_loop_on_amx_tracks_fp32_like_the_onednn_path(monkeypatch):
    """Same arithmetic, other summation order: the AMX run differs from the oneDNN run only in
    steps whose gradient is near zero, and tracks the fp32 result as well as it does."""
    z = torch.from_numpy(unit_rows(64, 64, seed=5))
    kw = {"start": "random", "steps": 6, "renorm": False, "eps": 0.05, "alpha": 0.01, "progress": False}
    ref = af.protect(z, _decoder(), device="cpu", **kw)
    runs = {}
    for amx in (True, False):
        monkeypatch.setenv("ADVFACE_CPU_AMX", "1" if amx else "0")
        runs[amx] = af.protect(z, _decoder(), device="cpu", precision="bf16", **kw)  # a fresh decoder: no cache
    moved = {amx: ((r - ref).abs() > 1e-3).float().mean().item() for amx, r in runs.items()}
    between = ((runs[True] - runs[False]).abs() > 1e-3).float().mean().item()
    assert moved[True] <= 1.25 * moved[False] + 0.02, moved
    assert between <= moved[False] + 0.02, (between, moved)
