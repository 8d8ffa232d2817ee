"""The GEMM-with-epilogue of :mod:`.mlp_gemm` for Hopper and newer: operands and epilogue tiles
move through tensor descriptors (TMA) and the kernel is optionally persistent.

Same ops, same epilogues, same results as the pointer kernel (``mlp_gemm._mlp_gemm_kernel``); the
launcher there calls :func:`launch` when :func:`eligible` says so. Why a second kernel: on an H100
the pointer kernel runs the bf16 loop at a lower fraction of the measured bf16 peak than the
cuBLASLt loop of the cuda backend (benchmarks/results/gpu-NVIDIA-H100-80GB-HBM3). Masked pointer
loads go through ``cp.async`` with per-thread address arithmetic and predicates; a descriptor load
is one TMA instruction per tile that also zero-fills out-of-bounds rows and columns (so the K, M
and N tails need no masks), and a descriptor store clips them. The persistent variant runs one
program per SM over all tiles with the tile loop flattened into the K loop, so the software
pipeline prefetches the next tile's operands while the current tile's epilogue runs; the
epilogue is split in two column halves (``EPI_SPLIT``) to halve its registers and shared memory.

Only bf16 operands already stored in bf16 take it (``precision="bf16"``: every GEMM of the loop
but the first layer's forward, whose input is the fp32 feature), with ``N`` and ``K`` multiples
of 8 (TMA needs 16-byte aligned row strides) -- the standard decoder's every layer. Selection:
``ADVFACE_TRITON_GEMM=auto`` (default: on CUDA GPUs of compute capability >= 9), ``tma``
(wherever the shapes allow, also under the interpreter: the tests use it), ``pointer`` (never).
Eligibility depends only on shapes, dtypes and alignment, never on the epilogue, so that the decode
of the shadow image and the loop's last layer run the same kernel, and they share one tuned config
(the autotuning key has no epilogue number, and both move 4 bytes per output element when the
target is stored in bf16): started at z with its own shadow image kept in fp32, the loop recomputes
that image bit for bit and stays put (tested). The default bf16 plan stores the target in bf16,
a rounding away from the recomputed image, so there the L1 signs are not 0 (as in the pointer
kernel).

If the kernel fails to compile on a GPU (a Triton version without Hopper descriptor support), the
launcher warns once and uses the pointer kernel for the rest of the process (:func:`failure`).
"""

from __future__ import annotations

import functools
import warnings

import torch
import triton
import triton.language as tl
from advface_fast.kernels._common import epilogue_math, is_interpreting, smallest_when_small, tile_origin, to_bf16

from advface_fast.engines import overrides

try:  # Triton >= 3.4 (host-side descriptors); the GPU machines have 3.6, CI 3.7
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - older Triton
    TensorDescriptor = None

MODES = overrides.TRITON_GEMMS  # ("auto", "tma", "pointer")
_override: list[str] = []  # set by forced(); innermost last
_failure: list[str] = []  # why the kernel was given up in this process (empty: it was not)


def mode() -> str:
    """The selection in force: :func:`forced`'s innermost value, else ``ADVFACE_TRITON_GEMM``, else auto."""
    return _override[-1] if _override else overrides.triton_gemm()


class forced:
    """``with forced("tma"):`` selects the GEMM kernel for the ops launched inside (tests, benchmarks)."""

    def __init__(self, which: str) -> None:
        if which not in MODES:
            raise ValueError(f"GEMM kernel {which!r} is not one of {MODES}")
        self.which = which

    def __enter__(self) -> forced:
        _override.append(self.which)
        return self

    def __exit__(self, *exc: object) -> None:
        _override.pop()


def failure() -> str | None:
    """Why the TMA kernel was given up in this process (a compile error on this GPU), or None."""
    return _failure[0] if _failure else None


@functools.cache
def _hopper_or_newer(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


@functools.cache
def _num_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _describable(t: torch.Tensor) -> bool:
    """A 2-D tensor a TMA descriptor can address: unit column stride, 16-byte aligned base and row stride."""
    return (
        t.dim() == 2
        and t.stride(1) == 1
        and (t.stride(0) * t.element_size()) % 16 == 0
        and t.data_ptr() % 16 == 0
        and t.numel() > 0
    )


def eligible(
    a: torch.Tensor, b_mat: torch.Tensor, out: torch.Tensor, extra: list[torch.Tensor], precision: str
) -> bool:
    """Whether ``out = epilogue(a @ b_mat)`` runs on the TMA kernel under the current :func:`mode`.

    ``extra``: the other tensors the epilogue reads or writes (target, saved, z, centre, pre)."""
    m = mode()
    if m == "pointer" or TensorDescriptor is None or _failure or precision != "bf16":
        return False
    if is_interpreting():
        if m != "tma":
            return False
    elif a.device.type != "cuda" or not _hopper_or_newer(a.device.index or 0):
        return False
    K, N = b_mat.shape
    if N % 8 or K % 8 or a.dtype != torch.bfloat16 or b_mat.dtype != torch.bfloat16:
        return False
    b_store = b_mat.t() if b_mat.stride(0) == 1 and b_mat.stride(1) != 1 else b_mat
    return all(_describable(t) for t in (a, b_store, out, *extra))


def configs() -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, EPI_SPLIT, PERSISTENT). BLOCK_K is 64 in all (128
    bytes of bf16: one swizzled TMA row), so every config sums K in the same blocks in the same
    order. Under the interpreter one config that exercises the split epilogue and the persistent
    loop."""
    if is_interpreting():
        shapes = [(32, 64, 64, 4, 2, 2, True)]
    else:
        # 128x256 in two warpgroups is the wgmma shape Triton's Hopper GEMMs settle on. Shared memory
        # on sm_90 (python -m advface_fast.kernels.aot_check, Triton 3.6 and 3.7 alike): 3 stages of
        # (128x64 + 256x64) bf16 = 144 KiB plus the epilogue's tiles; the persistent kernel keeps
        # the epilogue's reads in flight too, so it fits the 227 KiB limit for every launch of the
        # loop but the sign step (three fp32 tiles) and an fp32 target, which the non-persistent
        # 128x256 config covers. Four stages of 128x256 fit only the forward hidden layers.
        shapes = [
            (128, 256, 64, 8, 3, 2, True),
            (128, 128, 64, 8, 4, 1, True),
            (128, 256, 64, 8, 3, 2, False),
            (64, 128, 64, 4, 4, 1, False),
        ]
    return [
        triton.Config(
            {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8, "EPI_SPLIT": sp, "PERSISTENT": pe},
            num_warps=w,
            num_stages=st,
            pre_hook=_set_block_shapes,
        )
        for bm, bn, bk, w, st, sp, pe in shapes
    ]


def _set_block_shapes(nargs: dict) -> None:
    """Descriptors carry their tile shape, which depends on the config being launched."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk] if nargs["B_KMAJOR"] else [bk, bn]
    for name in ("out_desc", "aux_desc", "aux2_desc", "pre_desc"):
        nargs[name].block_shape = [bm, bn // nargs["EPI_SPLIT"]]


@triton.jit
def _tile_epilogue(
    acc, off_m, off_n, N, bias_ptr, out_desc, aux_desc, aux2_desc, pre_desc, slope, eps, alpha,
    EPI: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE_PRE: tl.constexpr,
    OUT_BF16: tl.constexpr, PRE_BF16: tl.constexpr, INTERPRET: tl.constexpr, SUB_N: tl.constexpr,
):  # fmt: skip
    """Bias, epilogue and store of the ``BLOCK_M x SUB_N`` output tile at (off_m, off_n); the
    descriptors zero-fill reads past the edges and clip the writes."""
    if HAS_BIAS:
        offs_n = off_n + tl.arange(0, SUB_N)
        acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    if EPI == 0 and SAVE_PRE:
        pre_desc.store([off_m, off_n], to_bf16(acc, INTERPRET) if PRE_BF16 else acc)
    aux = acc  # placeholders where the epilogue reads nothing
    aux2 = acc
    if EPI == 1 or EPI == 2 or EPI == 3:
        aux = aux_desc.load([off_m, off_n]).to(tl.float32)
    if EPI == 3:
        aux2 = aux2_desc.load([off_m, off_n]).to(tl.float32)
    res = epilogue_math(acc, aux, aux2, slope, eps, alpha, EPI, ACT, OUT_ACT)
    if OUT_BF16:
        res = to_bf16(res, INTERPRET)
    out_desc.store([off_m, off_n], res)


@triton.autotune(
    configs=configs(),
    # EPI_BYTES (bytes per output element the epilogue reads and writes) is in the key because the
    # persistent configs keep the epilogue's tiles in flight: a config that fits one epilogue can
    # exceed the shared memory with another (aot_check: 128x256 fits the last layer with a bf16
    # target, 213 KiB, not with an fp32 one, 247 KiB). The decode and the last layer with the bf16
    # target (4 bytes each) still share their tuning.
    key=["M", "N", "K", "B_KMAJOR", "EPI_BYTES"],
    prune_configs_by={"early_config_prune": smallest_when_small},  # as the pointer kernel
)
@triton.jit
def _mlp_gemm_tma_kernel(
    a_desc, b_desc, out_desc, bias_ptr, aux_desc, aux2_desc, pre_desc,
    M, N, K, slope, eps, alpha,
    EPI: tl.constexpr, ACT: tl.constexpr, OUT_ACT: tl.constexpr, HAS_BIAS: tl.constexpr, SAVE_PRE: tl.constexpr,
    B_KMAJOR: tl.constexpr, OUT_BF16: tl.constexpr, PRE_BF16: tl.constexpr, INTERPRET: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    EPI_SPLIT: tl.constexpr, PERSISTENT: tl.constexpr, EPI_BYTES: tl.constexpr,
):  # fmt: skip
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    num_tiles = num_m * num_n
    k_tiles = tl.cdiv(K, BLOCK_K)
    per_group = GROUP_M * num_n
    SUB_N: tl.constexpr = BLOCK_N // EPI_SPLIT
    # One tile per program, or (PERSISTENT) a grid-stride walk over the tiles, flattened with the
    # K loop so that the pipeline's prologue for the next tile overlaps this tile's epilogue. The
    # epilogue's tile comes from a counter of its own, as Triton's persistent-matmul tutorial does:
    # its note says the flattened pipeline cannot yet share one value between prologue and epilogue.
    tile_c = tl.program_id(0) - tl.num_programs(0)
    for tile in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=PERSISTENT):
        off_m, off_n = tile_origin(tile, num_m, per_group, GROUP_M, BLOCK_M, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for kb in range(k_tiles):
            a = a_desc.load([off_m, kb * BLOCK_K])
            if B_KMAJOR:  # noqa: SIM108 - B = W^T of a row-major W (N, K): read W's rows, transpose the tile
                b = b_desc.load([off_n, kb * BLOCK_K]).T
            else:
                b = b_desc.load([kb * BLOCK_K, off_n])
            if INTERPRET:  # the interpreter's bf16 dot is wrong; bf16 x bf16 products are exact in fp32
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc)
        tile_c += tl.num_programs(0)
        out_m, out_n = tile_origin(tile_c, num_m, per_group, GROUP_M, BLOCK_M, BLOCK_N)
        if EPI_SPLIT == 1:
            _tile_epilogue(
                acc, out_m, out_n, N, bias_ptr, out_desc, aux_desc, aux2_desc, pre_desc, slope, eps, alpha,
                EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, SUB_N,
            )  # fmt: skip
        else:  # two column halves: half the registers and shared memory live at once
            acc0, acc1 = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, SUB_N)), (0, 2, 1)))
            _tile_epilogue(
                acc0, out_m, out_n, N, bias_ptr, out_desc, aux_desc, aux2_desc, pre_desc, slope, eps, alpha,
                EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, SUB_N,
            )  # fmt: skip
            _tile_epilogue(
                acc1, out_m, out_n + SUB_N, N, bias_ptr, out_desc, aux_desc, aux2_desc, pre_desc, slope, eps, alpha,
                EPI, ACT, OUT_ACT, HAS_BIAS, SAVE_PRE, OUT_BF16, PRE_BF16, INTERPRET, SUB_N,
            )  # fmt: skip


def _desc(t: torch.Tensor) -> TensorDescriptor:
    # the tile shape is a placeholder until the config's pre_hook sets it
    return TensorDescriptor(t, list(t.shape), list(t.stride()), [8, 8])


def launch(
    a: torch.Tensor, b_mat: torch.Tensor, out: torch.Tensor, *, epi: int, act: int, out_act: int,
    bias: torch.Tensor | None, aux: torch.Tensor | None, aux2: torch.Tensor | None, pre: torch.Tensor | None,
    slope: float, eps: float, alpha: float, config: triton.Config | None = None,
) -> bool:  # fmt: skip
    """``out = epilogue(a @ b_mat)`` on the TMA kernel (the caller checked :func:`eligible`); False
    when the kernel failed to compile here and the caller must use the pointer kernel.

    ``config`` (one of :func:`configs`; for tests) runs exactly that config, without autotuning,
    and lets any error through: the autotuner runs the best config only, so a config that computed
    wrong results would otherwise show on some shapes and GPUs only."""
    M, K = a.shape
    N = b_mat.shape[1]
    b_kmajor = b_mat.stride(0) == 1 and b_mat.stride(1) != 1
    out_d = _desc(out)
    # descriptors the epilogue does not read point at `out`, as the pointer kernel's dummies do
    aux_d = _desc(aux) if aux is not None else out_d
    aux2_d = _desc(aux2) if aux2 is not None else out_d
    pre_d = _desc(pre) if pre is not None else out_d
    programs = 3 if is_interpreting() else _num_sms(a.device.index or 0)

    def grid(meta: dict) -> tuple[int]:
        tiles = triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])
        return (min(tiles, programs) if meta["PERSISTENT"] else tiles,)

    args = (
        _desc(a), _desc(b_mat.t() if b_kmajor else b_mat), out_d, bias if bias is not None else out,
        aux_d, aux2_d, pre_d,
        M, N, K, float(slope), float(eps), float(alpha),
    )  # fmt: skip
    consts = {
        "EPI": epi, "ACT": act, "OUT_ACT": out_act, "HAS_BIAS": bias is not None, "SAVE_PRE": pre is not None,
        "B_KMAJOR": b_kmajor, "OUT_BF16": out.dtype == torch.bfloat16,
        "PRE_BF16": pre is not None and pre.dtype == torch.bfloat16, "INTERPRET": is_interpreting(),
        "EPI_BYTES": sum(t.element_size() for t in (out, aux, aux2, pre) if t is not None),
    }  # fmt: skip
    if config is not None:
        fn = _mlp_gemm_tma_kernel.fn
        _set_block_shapes(dict(zip(fn.arg_names, args, strict=False)) | consts | config.all_kwargs())
        fn[grid](*args, **consts, **config.all_kwargs())
        return True
    try:
        _mlp_gemm_tma_kernel[grid](*args, **consts)
    except Exception as exc:
        if is_interpreting():  # a bug in the kernel: the tests must see it
            raise
        _failure.append(f"{type(exc).__name__}: {exc}"[:500])
        warnings.warn(
            f"the Triton TMA GEMM kernel failed on this GPU and is disabled for this process; the pointer "
            f"kernel runs instead ({_failure[0][:200]})",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True
