"""Compiled elementwise ops of ``advface_fast._C``, each beside its torch reference.

``clipped_sign_step(z, g, centre, eps, alpha)`` == ``torch.clamp(z + alpha * torch.sign(g),
centre - eps, centre + eps)`` (:func:`advface_fast.reference.clipped_sign_step_ref`), computed in
place in one pass. The C++/CUDA versions skip the three temporaries torch allocates; they are
building blocks of the fused backends and match the reference bit for bit on finite inputs.
"""

from __future__ import annotations

import torch

from . import _ext
from .errors import BackendUnavailableError
from .reference import clipped_sign_step_ref

__all__ = ["clipped_sign_step", "clipped_sign_step_ref"]


def _check(z: torch.Tensor, g: torch.Tensor, centre: torch.Tensor) -> None:
    for name, t in (("g", g), ("centre", centre)):
        if t.shape != z.shape or t.dtype != z.dtype or t.device != z.device:
            raise ValueError(
                f"{name} must match z in shape, dtype and device: {tuple(t.shape)} {t.dtype} {t.device} "
                f"vs {tuple(z.shape)} {z.dtype} {z.device}"
            )
    if not z.is_contiguous():
        raise ValueError("z is updated in place and must be contiguous")


def clipped_sign_step(
    z: torch.Tensor, g: torch.Tensor, centre: torch.Tensor, eps: float, alpha: float, *, backend: str = "auto"
) -> torch.Tensor:
    """In place on ``z``: ``z = clamp(z + alpha * sign(g), centre - eps, centre + eps)``; returns ``z``.

    ``z``, ``g``, ``centre``: tensors of one shape, dtype and device; ``z`` contiguous.
    ``backend``: ``"auto"`` (compiled when it supports the dtype/device, else torch), ``"torch"``,
    ``"compiled"`` (raises :class:`BackendUnavailableError` when it cannot run).
    CPU: float32/float64. CUDA: float32.
    """
    _check(z, g, centre)
    ext = _ext.load()
    reason = None
    if ext is None:
        reason = _ext.load_error()
    elif z.device.type == "cpu" and z.dtype not in (torch.float32, torch.float64):
        reason = f"the CPU kernel takes float32/float64, got {z.dtype}"
    elif z.device.type == "cuda" and (not ext.build_info().get("cuda") or z.dtype != torch.float32):
        reason = (
            "the CUDA kernel is not built" if not ext.build_info().get("cuda") else f"CUDA takes float32, got {z.dtype}"
        )
    elif z.device.type not in ("cpu", "cuda"):
        reason = f"no compiled kernel for device {z.device}"
    if backend == "torch" or (reason is not None and backend == "auto"):
        z.copy_(clipped_sign_step_ref(z, g, centre, eps, alpha))
        return z
    if backend not in ("auto", "compiled"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'torch', 'compiled'")
    if reason is not None:
        raise BackendUnavailableError(f"compiled clipped_sign_step cannot run: {reason}")
    g, centre = g.contiguous(), centre.contiguous()
    if z.device.type == "cpu":
        ext.clipped_sign_step_cpu(
            z.data_ptr(),
            g.data_ptr(),
            centre.data_ptr(),
            z.numel(),
            float(eps),
            float(alpha),
            str(z.dtype).removeprefix("torch."),
        )
    else:
        stream = torch.cuda.current_stream(z.device).cuda_stream
        with torch.cuda.device(z.device):
            ext.clipped_sign_step_cuda(
                z.data_ptr(), g.data_ptr(), centre.data_ptr(), z.numel(), float(eps), float(alpha), stream
            )
    return z
