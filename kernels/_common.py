"""Shared pieces of the Triton kernels: interpreter detection, activations, launch configs."""

from __future__ import annotations

import triton
import triton.language as tl

from advface_fast.engines import overrides

# The constexpr codes ACT / OUT_ACT of the kernels below are the activation catalogue's
# (advface_fast.models.activations: relu 0, leaky_relu 1, gelu 2; none 0, tanh 1, sigmoid 2), the C++ kernels' too.


def is_interpreting() -> bool:
    """True when Triton runs kernels on the CPU (``TRITON_INTERPRET=1``)."""
    return overrides.triton_interpret()


@triton.jit
def hidden_act(a, ACT: tl.constexpr, slope):
    """relu (ACT 0) / leaky_relu (1) / exact-erf gelu (2) of the pre-activation ``a`` (fp32)."""
    if ACT == 0:
        h = tl.maximum(a, 0.0)
    elif ACT == 1:
        h = tl.where(a > 0, a, a * slope)
    else:
        h = 0.5 * a * (1.0 + tl.erf(a * 0.7071067811865476))
    return h


@triton.jit
def hidden_act_grad(saved, ACT: tl.constexpr, slope):
    """Derivative of the hidden activation. ``saved`` is the output h for relu/leaky_relu
    (h > 0 exactly when a > 0, as torch's backward decides) and the pre-activation a for gelu."""
    if ACT == 0:
        d = tl.where(saved > 0, 1.0, 0.0)
    elif ACT == 1:
        d = tl.where(saved > 0, 1.0, slope)
    else:
        cdf = 0.5 * (1.0 + tl.erf(saved * 0.7071067811865476))
        d = cdf + saved * tl.exp(-0.5 * saved * saved) * 0.3989422804014327
    return d


@triton.jit
def out_act_and_grad(pre, OUT_ACT: tl.constexpr):
    """``(y, dy/dpre)`` of the output activation (OUT_ACT 1 tanh, 2 sigmoid, 0 none); the derivative
    from y, as torch's backward does."""
    if OUT_ACT == 1:
        # tanh(x) = 1 - 2 / (exp(2x) + 1): exp overflow gives 1, underflow -1, never NaN
        y = 1.0 - 2.0 / (tl.exp(2.0 * pre) + 1.0)
        d = 1.0 - y * y
    elif OUT_ACT == 2:
        y = 1.0 / (1.0 + tl.exp(-pre))
        d = y * (1.0 - y)
    else:
        y = pre
        d = tl.full(pre.shape, 1.0, tl.float32)
    return y, d


@triton.jit
def epilogue_math(acc, aux, aux2, slope, eps, alpha, EPI: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr):
    """The fp32 epilogue of one output tile, shared by both GEMM kernels (see ``mlp_gemm``'s table).

    ``acc`` is the tile of ``A @ B`` (plus the bias), ``aux``/``aux2`` the tiles the epilogue reads
    (already widened to fp32; ignored where ``EPI`` needs none): EPI 0 forward hidden layer, 1 last
    layer's L1 sign (aux = target image), 2 backward through the activation (aux = saved), 3 the
    projected sign step (aux = z, aux2 = centre), 4 the decoded image."""
    if EPI == 0:
        res = hidden_act(acc, ACT, slope)
    elif EPI == 1:
        y, dy = out_act_and_grad(acc, OUT_ACT)
        diff = y - aux
        res = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0)) * dy
    elif EPI == 2:
        res = acc * hidden_act_grad(aux, ACT, slope)
    elif EPI == 3:
        sgn = tl.where(acc > 0, 1.0, tl.where(acc < 0, -1.0, 0.0))
        res = tl.minimum(tl.maximum(aux + alpha * sgn, aux2 - eps), aux2 + eps)
    else:
        res, _ = out_act_and_grad(acc, OUT_ACT)
    return res


def gemm_configs() -> list[triton.Config]:
    """Block sizes to autotune over on GPUs (Hopper first); one large block under the interpreter,
    whose cost grows with the number of programs."""
    if is_interpreting():
        # EPI_SPLIT 2 here so that CI runs the split epilogue the GPU's 128x256 tiles use
        interp = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8, "EPI_SPLIT": 2}
        return [triton.Config(interp, num_warps=4)]
    # Each candidate costs a compile per kernel specialisation (~1 s; the loop has ~5 per
    # precision), so few: large tiles for the big GEMMs (the last layer is B x 12288 x 2048 at the
    # standard configuration), a small one for small batches. fp32 operands take twice the shared
    # memory, so they get BLOCK_K = 32 (128x256x64 fp32 tiles in 3 stages need 288 KiB, more than
    # an H100 has); prune_configs picks the set by operand precision.
    shapes = [(128, 256, 64, 8, 3), (128, 128, 64, 8, 4), (64, 128, 64, 4, 4), (64, 64, 64, 4, 3)]
    shapes += [(128, 256, 32, 8, 3), (128, 128, 32, 8, 4), (64, 128, 32, 4, 4)]
    # EPI_SPLIT: the 128x256 tiles run their epilogue on column halves (see the kernel)
    return [
        triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "EPI_SPLIT": 2 if bn == 256 else 1},
            num_warps=w,
            num_stages=st,
        )
        for bm, bn, bk, w, st in shapes
    ]


def prune_configs(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """BLOCK_K 64 for bf16 operands, 32 for fp32 ones (see gemm_configs). Problems too small to fill
    the GPU with large tiles get the smallest tile only (no tuning: they are launch-bound, and
    each candidate would cost a compile)."""
    if len(configs) > 1:
        bk = 64 if kwargs.get("OPERAND_BF16") else 32
        configs = [c for c in configs if c.kwargs["BLOCK_K"] == bk] or configs
    return smallest_when_small(configs, named_args)


def smallest_when_small(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
    """Both GEMM kernels' rule: an output of at most 16 128x128 tiles cannot fill the GPU with large
    tiles, so it gets the smallest tile only. (An autotuner's ``early_config_prune``.)"""
    if named_args["M"] * named_args["N"] <= 128 * 128 * 16:
        return [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]
    return configs


@triton.jit
def tile_origin(tile, num_m, per_group, GROUP_M: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """First row and column of output tile ``tile`` in grouped order (consecutive tiles share
    B-operand columns in L2); ``per_group`` = GROUP_M x the number of column tiles."""
    first_m = (tile // per_group) * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    return (first_m + (tile % per_group) % group_size) * BLOCK_M, ((tile % per_group) // group_size) * BLOCK_N


@triton.jit
def to_bf16(x, INTERPRET: tl.constexpr):
    """fp32 -> bf16 with round-to-nearest-even, as the GPU's ``cvt.rn.bf16.f32`` does. The
    interpreter's own cast truncates, which would double bf16's error in tests, so there the
    rounding is done on the bits first (exact carry into the exponent)."""
    if INTERPRET:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(tl.bfloat16)
