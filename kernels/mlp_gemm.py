"""One GEMM kernel with the four epilogues of the AdvFace loop over an MLP decoder, the host
launchers, and each op's torch reference (``*_ref``, same signature) side by side.

With ``W`` a layer's weight ``(out, in)``, ``b`` its bias, every op is ``A @ B`` plus an epilogue:

| op                        | GEMM          | epilogue (fp32, in registers)                                   |
|---------------------------|---------------|-----------------------------------------------------------------|
| ``linear_act``            | ``x @ W.T``   | ``h = act(acc + b)``; for gelu also store ``a = acc + b``       |
| ``last_layer_l1_sign``    | ``h @ W.T``   | ``y = out_act(acc + b)``; ``s = sign(y - x~) * out_act'(y)``    |
| ``linear_act_backward``   | ``d @ W``     | ``d_prev = acc * act'(saved)``                                  |
| ``input_grad_sign_step``  | ``d @ W``     | ``z' = clamp(z + alpha * sign(acc), c - eps, c + eps)``         |
| ``linear_out``            | ``h @ W.T``   | ``y = out_act(acc + b)`` (decoding the shadow image)            |

The last layer writes ``s`` (what the backward needs) instead of the image ``y``: the image never
goes to memory. Fusing further, to also run the first backward GEMM ``s @ W_L`` in the same
kernel as attention does, needs a ``BLOCK_M x H_{L-1}`` accumulator per program (64 x 2048 fp32 =
512 KiB at the standard configuration, twice an H100's shared memory) or atomics over all ``P /
BLOCK_N`` column blocks (~3 GB of atomic traffic per step at B = 4096); writing ``s`` in bf16
costs ~100 MB per step at that batch, about 7% of the two GEMMs it sits between.

On Hopper and newer GPUs, bf16 GEMMs whose sizes are multiples of 8 run on a second kernel with
the same epilogues, ``mlp_gemm_tma`` (TMA descriptors, persistent); :func:`_launch` picks it.

Precision (``precision=``): ``"fp32"`` IEEE fp32 dot, ``"tf32"`` tensor-core tf32, ``"bf16"``
operands rounded to bf16 (weights stored in bf16, activations stored in bf16), fp32 accumulate;
epilogues always in fp32. Under the interpreter, operands are widened to fp32 before ``tl.dot``
(its bf16 dot is wrong), after the bf16 rounding, so bf16 numerics are still emulated; and
fp32 -> bf16 roundings are done round-to-nearest-even on the bits (its cast truncates).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from advface_fast.kernels import mlp_gemm_tma
from advface_fast.kernels._common import (
    epilogue_math,
    gemm_configs,
    is_interpreting,
    prune_configs,
    tile_origin,
    to_bf16,
)

from advface_fast.models.activations import ACT_CODES, OUT_ACT_CODES, hidden_activation, output_activation

EPI_ACT, EPI_LAST, EPI_BWD, EPI_STEP, EPI_OUT = 0, 1, 2, 3, 4


# The epilogue is deliberately not part of the autotuning key: the decode of the shadow image
# (EPI_OUT) and the last layer of a step (EPI_LAST) then share one block configuration, so at the
# start point z_0 = z the step recomputes *exactly* the shadow image and the L1 signs there are
# exact zeros, as in the reference (start="original").
@triton.autotune(
    configs=gemm_configs(),
    key=["M", "N", "K", "OPERAND_BF16", "INPUT_PRECISION"],
    prune_configs_by={"early_config_prune": prune_configs},
)
@triton.jit
def _mlp_gemm_kernel(
    a_ptr, b_ptr, out_ptr, bias_ptr, aux_ptr, aux2_ptr, pre_ptr,
    M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_om, stride_on, stride_xm, stride_xn, stride_ym, stride_yn,
    slope, eps, alpha,
    EPI: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE_PRE: tl.constexpr,
    OPERAND_BF16: tl.constexpr, CAST_A: tl.constexpr, CAST_B: tl.constexpr,
    OUT_BF16: tl.constexpr, PRE_BF16: tl.constexpr, INTERPRET: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPI_SPLIT: tl.constexpr,
):  # fmt: skip
    # Grouped ordering of the (M, N) tiles so that consecutive programs share B-operand columns in L2.
    m0, n0 = tile_origin(
        tl.program_id(0), tl.cdiv(M, BLOCK_M), GROUP_M * tl.cdiv(N, BLOCK_N), GROUP_M, BLOCK_M, BLOCK_N
    )

    # int64 row/column indices: B x P exceeds 2**31 elements for large batches of large images.
    offs_m = (m0 + tl.arange(0, BLOCK_M)).to(tl.int64)
    offs_n = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & mask_n[None, :], other=0.0)
        # Operands already stored in bf16 (weights, activations) load as they are; fp32 ones (z, an
        # fp32 target of a test) are rounded here. Static (constexpr) branches only.
        if CAST_A:
            a = to_bf16(a, INTERPRET)
        if CAST_B:
            b = to_bf16(b, INTERPRET)
        if INTERPRET:  # the interpreter's bf16 dot is wrong; bf16 x bf16 products are exact in fp32
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    # The epilogue on column halves when EPI_SPLIT = 2 (the 128x256 tiles): half of the offsets,
    # masks and epilogue operands live at once. Compiled for sm_90 (kernels/aot_check.py) the
    # 128x256 bf16 last layer spilled 176 bytes per thread with the whole tile, 0 with halves.
    if EPI_SPLIT == 1:
        _pointer_epilogue(
            acc, offs_m, n0, M, N, out_ptr, bias_ptr, aux_ptr, aux2_ptr, pre_ptr,
            stride_om, stride_on, stride_xm, stride_xn, stride_ym, stride_yn, slope, eps, alpha,
            EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, BLOCK_N,
        )  # fmt: skip
    else:
        SUB_N: tl.constexpr = BLOCK_N // 2
        acc0, acc1 = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, SUB_N)), (0, 2, 1)))
        _pointer_epilogue(
            acc0, offs_m, n0, M, N, out_ptr, bias_ptr, aux_ptr, aux2_ptr, pre_ptr,
            stride_om, stride_on, stride_xm, stride_xn, stride_ym, stride_yn, slope, eps, alpha,
            EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, SUB_N,
        )  # fmt: skip
        _pointer_epilogue(
            acc1, offs_m, n0 + SUB_N, M, N, out_ptr, bias_ptr, aux_ptr, aux2_ptr, pre_ptr,
            stride_om, stride_on, stride_xm, stride_xn, stride_ym, stride_yn, slope, eps, alpha,
            EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, SUB_N,
        )  # fmt: skip


@triton.jit
def _pointer_epilogue(
    acc, offs_m, n0, M, N, out_ptr, bias_ptr, aux_ptr, aux2_ptr, pre_ptr,
    stride_om, stride_on, stride_xm, stride_xn, stride_ym, stride_yn, slope, eps, alpha,
    EPI: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE_PRE: tl.constexpr,
    OUT_BF16: tl.constexpr, PRE_BF16: tl.constexpr, INTERPRET: tl.constexpr, SUB_N: tl.constexpr,
):  # fmt: skip
    """Bias, epilogue and masked store of the output columns ``n0 .. n0 + SUB_N`` of the tile."""
    offs_n = (n0 + tl.arange(0, SUB_N)).to(tl.int64)
    mask_n = offs_n < N
    mask = (offs_m < M)[:, None] & mask_n[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    x_off = offs_m[:, None] * stride_xm + offs_n[None, :] * stride_xn
    o_off = offs_m[:, None] * stride_om + offs_n[None, :] * stride_on
    if EPI == 0 and SAVE_PRE:  # gelu's backward needs the pre-activation
        tl.store(pre_ptr + o_off, to_bf16(acc, INTERPRET) if PRE_BF16 else acc, mask=mask)
    aux = acc  # placeholders where the epilogue reads nothing (never used there)
    aux2 = acc
    if EPI == 1 or EPI == 2 or EPI == 3:
        aux = tl.load(aux_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    if EPI == 3:
        aux2 = tl.load(aux2_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn, mask=mask, other=0.0)
    res = epilogue_math(acc, aux, aux2, slope, eps, alpha, EPI, ACT, OUT_ACT)
    if OUT_BF16:
        res = to_bf16(res, INTERPRET)
    tl.store(out_ptr + o_off, res, mask=mask)


def _dot_precision(precision: str) -> str:
    return {"fp32": "ieee", "tf32": "tf32", "bf16": "tf32"}[precision]


def _launch(
    a: torch.Tensor, b_mat: torch.Tensor, out: torch.Tensor, *, epi: int, precision: str,
    bias: torch.Tensor | None = None, aux: torch.Tensor | None = None, aux2: torch.Tensor | None = None,
    pre: torch.Tensor | None = None, act: str = "relu", out_act: str = "none", slope: float = 0.0,
    eps: float = 0.0, alpha: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """``out = epilogue(a @ b_mat)``; ``b_mat`` may be a transposed view (strides are passed)."""
    M, K = a.shape
    K2, N = b_mat.shape
    if K != K2 or out.shape != (M, N):
        raise ValueError(f"shape mismatch: {tuple(a.shape)} @ {tuple(b_mat.shape)} -> {tuple(out.shape)}")
    extra = [t for t in (aux, aux2, pre) if t is not None]
    if mlp_gemm_tma.eligible(a, b_mat, out, extra, precision) and mlp_gemm_tma.launch(
        a, b_mat, out, epi=epi, act=ACT_CODES[act], out_act=OUT_ACT_CODES[out_act], bias=bias, aux=aux, aux2=aux2,
        pre=pre, slope=slope, eps=eps, alpha=alpha,
    ):  # fmt: skip
        return out
    x = aux if aux is not None else out
    y = aux2 if aux2 is not None else out
    dummy = out

    def grid(meta):
        return (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)

    _mlp_gemm_kernel[grid](
        a, b_mat, out, bias if bias is not None else dummy, x, y, pre if pre is not None else dummy,
        M, N, K,
        a.stride(0), a.stride(1), b_mat.stride(0), b_mat.stride(1), out.stride(0), out.stride(1),
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        float(slope), float(eps), float(alpha),
        EPI=epi, ACT=ACT_CODES[act], OUT_ACT=OUT_ACT_CODES[out_act], HAS_BIAS=bias is not None,
        SAVE_PRE=pre is not None,
        OPERAND_BF16=precision == "bf16",
        CAST_A=precision == "bf16" and a.dtype == torch.float32,
        CAST_B=precision == "bf16" and b_mat.dtype == torch.float32,
        OUT_BF16=out.dtype == torch.bfloat16,
        PRE_BF16=pre is not None and pre.dtype == torch.bfloat16, INTERPRET=is_interpreting(),
        INPUT_PRECISION=_dot_precision(precision),
    )  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# The ops. Shapes: x (B, in), w (out, in), b (out,), h (B, out), target (B, P), z/c (B, D).
# Each *_ref computes in the dtype of its ``out`` tensor (float64 makes it an oracle).


def linear_act(x, w, b, out, pre, *, act, slope, precision):
    """``out = act(x @ w.T + b)``; when ``pre`` is given also ``pre = x @ w.T + b`` (gelu's backward needs it)."""
    return _launch(x, w.t(), out, epi=EPI_ACT, precision=precision, bias=b, pre=pre, act=act, slope=slope)


def linear_act_ref(x, w, b, out, pre, *, act, slope, precision):
    a = x.to(out.dtype) @ w.to(out.dtype).t() + b.to(out.dtype)
    if pre is not None:
        pre.copy_(a)
    return out.copy_(hidden_activation(a, act, slope))


def last_layer_l1_sign(h, w, b, target, out, *, out_act, precision):
    """``out = sign(out_act(h @ w.T + b) - target) * out_act'(...)``: d||y - target||_1 / d(pre-activation)."""
    return _launch(h, w.t(), out, epi=EPI_LAST, precision=precision, bias=b, aux=target, out_act=out_act)


def last_layer_l1_sign_ref(h, w, b, target, out, *, out_act, precision):
    pre = (h.to(out.dtype) @ w.to(out.dtype).t() + b.to(out.dtype)).requires_grad_(True)
    y = output_activation(pre, out_act)
    (g,) = torch.autograd.grad((y - target.to(out.dtype)).abs().sum(), pre)
    return out.copy_(g)


def linear_act_backward(d, w, saved, out, *, act, slope, precision):
    """``out = (d @ w) * act'(saved)`` with ``saved`` = h for relu/leaky_relu, the pre-activation for gelu."""
    return _launch(d, w, out, epi=EPI_BWD, precision=precision, aux=saved, act=act, slope=slope)


def linear_act_backward_ref(d, w, saved, out, *, act, slope, precision):
    s = saved.to(out.dtype)
    one = torch.ones((), dtype=out.dtype)
    deriv = {"relu": (s > 0).to(out.dtype), "leaky_relu": torch.where(s > 0, one, one * slope)}.get(act)
    if deriv is None:
        a = s.clone().requires_grad_(True)
        (deriv,) = torch.autograd.grad(torch.nn.functional.gelu(a).sum(), a)
    return out.copy_((d.to(out.dtype) @ w.to(out.dtype)) * deriv)


def input_grad_sign_step(d, w, z, centre, out, *, eps, alpha, precision):
    """``out = clamp(z + alpha * sign(d @ w), centre - eps, centre + eps)`` (``out`` must not alias ``z``)."""
    return _launch(d, w, out, epi=EPI_STEP, precision=precision, aux=z, aux2=centre, eps=eps, alpha=alpha)


def input_grad_sign_step_ref(d, w, z, centre, out, *, eps, alpha, precision):
    g = d.to(out.dtype) @ w.to(out.dtype)
    z, centre = z.to(out.dtype), centre.to(out.dtype)
    return out.copy_(torch.clamp(z + alpha * torch.sign(g), centre - eps, centre + eps))


def linear_out(h, w, b, out, *, out_act, precision):
    """``out = out_act(h @ w.T + b)``: the decoder's last layer, to decode the shadow image."""
    return _launch(h, w.t(), out, epi=EPI_OUT, precision=precision, bias=b, out_act=out_act)


def linear_out_ref(h, w, b, out, *, out_act, precision):
    pre = h.to(out.dtype) @ w.to(out.dtype).t() + b.to(out.dtype)
    return out.copy_(output_activation(pre, out_act))
