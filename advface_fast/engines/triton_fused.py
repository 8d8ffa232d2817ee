"""Engines ``"triton-pointer"`` and ``"triton-tma"`` (family ``"triton"``): the fused Triton loop
for :class:`~advface_fast.models.decoders.MLPDecoder` (``kernels/pgd_mlp.py``: 2L kernels a step, no
weight gradient, no image in memory) on NVIDIA GPUs; on the CPU only under Triton's interpreter
(``TRITON_INTERPRET=1``), which is for tests and never taken by ``auto``.

The two differ in the GEMM kernel: ``triton-pointer`` runs the pointer kernel
(``kernels/mlp_gemm.py``) everywhere; ``triton-tma`` runs the tensor-descriptor kernel
(``kernels/mlp_gemm_tma.py``, Hopper and newer, bf16 operands) for every GEMM whose shapes allow
it and the pointer kernel for the rest (the first layer's fp32 input). ``"triton"`` is
``triton-tma`` on GPUs of compute capability >= 9 at ``precision="bf16"``, else
``triton-pointer``; ``ADVFACE_TRITON_GEMM=tma|pointer`` (or ``mlp_gemm_tma.forced``) overrides.
"""

from __future__ import annotations

import functools
import sys

import torch
from torch import nn

from . import overrides
from .registry import Engine, Family, mlp_decoder_only, nvidia_gpu_only, register


@functools.lru_cache(maxsize=1)
def triton_import_error() -> str | None:
    """None if Triton and the kernels import here, else why not (checked once)."""
    try:
        import triton  # noqa: F401

        from ..kernels import pgd_mlp  # noqa: F401
    except Exception as exc:  # ImportError, or a Triton that fails to initialise
        return f"Triton is not usable here ({type(exc).__name__}: {exc})"
    return None


def _triton_ready(decoder: nn.Module, device: torch.device, precision: str) -> str | None:
    return triton_import_error()


def _tma_ready(decoder: nn.Module, device: torch.device, precision: str) -> str | None:
    if precision != "bf16":
        return "the TMA kernel takes bf16 GEMMs (precision='bf16'); fp32 and tf32 run on triton-pointer"
    from ..kernels import mlp_gemm_tma

    if mlp_gemm_tma.TensorDescriptor is None:
        return "this Triton has no host-side tensor descriptors (Triton >= 3.4 needed)"
    if mlp_gemm_tma.failure() is not None:
        return f"the TMA kernel failed to compile in this process: {mlp_gemm_tma.failure()}"
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 9:
        return "the TMA kernel needs a GPU of compute capability >= 9 (Hopper or newer)"
    return None


def triton_pgd(
    decoder: nn.Module,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    precision: str = "fp32",
    gemm: str = "auto",
) -> torch.Tensor:
    """:func:`~advface_fast.engines.reference.pgd_ref` on the fused loop, GEMM kernel ``gemm`` (``"auto"``,
    ``"tma"``, ``"pointer"``: ``mlp_gemm_tma.forced``); ``z0``'s dtype out."""
    from ..kernels.mlp_gemm_tma import forced
    from ..kernels.pgd_mlp import pgd_mlp, plan_for

    with forced(gemm):
        return pgd_mlp(plan_for(decoder, z0.device, precision), z0, centre, target, eps, alpha, steps).to(z0.dtype)


def triton_decode(decoder: nn.Module, z: torch.Tensor, precision: str = "fp32", gemm: str = "auto") -> torch.Tensor:
    """``S(z)`` ``(B, C, H, W)`` float32 on the loop's kernels, GEMM kernel ``gemm``."""
    from ..kernels.mlp_gemm_tma import forced
    from ..kernels.pgd_mlp import decode_mlp, plan_for

    with forced(gemm):
        out = decode_mlp(plan_for(decoder, z.device, precision), z)
    return out.reshape(z.shape[0], *decoder.out_shape)


def _engine(gemm: str, description: str) -> Engine:
    checks = (nvidia_gpu_only("triton", interpreter_ok=True), mlp_decoder_only("the fused engine"), _triton_ready)
    if gemm == "tma":
        checks = (*checks, _tma_ready)
    pgd, decode = functools.partial(triton_pgd, gemm=gemm), functools.partial(triton_decode, gemm=gemm)
    return Engine(f"triton-{gemm}", description, pgd, decode, checks=checks, family="triton")


def _variants(device: torch.device) -> tuple[str, ...]:
    # mlp_gemm_tma.forced()'s choice, else ADVFACE_TRITON_GEMM; the kernels are not imported here
    # (Triton fixes interpreter or compiled mode when they are first imported)
    tma = sys.modules.get("advface_fast.kernels.mlp_gemm_tma")
    gemm = tma.mode() if tma is not None else overrides.triton_gemm()
    if gemm != "auto":
        return (f"triton-{gemm}",)
    if device.type == "cuda" and not overrides.triton_interpret():
        return ("triton-tma", "triton-pointer")
    return ("triton-pointer",)


TRITON = register(
    Family("triton", "triton-tma on Hopper+ in bf16, else triton-pointer (ADVFACE_TRITON_GEMM overrides)", _variants)
)

TRITON_POINTER = register(_engine("pointer", "MLPDecoder fused in Triton, pointer GEMM kernel (NVIDIA GPUs)"))
TRITON_TMA = register(
    _engine("tma", "MLPDecoder fused in Triton, TMA GEMM kernel where shapes allow (bf16, compute capability >= 9)")
)
