"""Engine ``"torch"``: the reference loop (:func:`~advface_fast.engines.reference.pgd_ref`, autograd
through the decoder) for any ``nn.Module`` decoder on any device; ``auto``'s last resort."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .reference import pgd_ref
from .registry import Engine, register


@contextlib.contextmanager
def torch_precision(device: torch.device, precision: str) -> Iterator[None]:
    """bf16: autocast; tf32: tf32 matmuls (CUDA only, checked by the registry); fp32: nothing."""
    if precision == "fp32":
        yield
    elif precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev


def torch_pgd(
    decoder: nn.Module,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """The reference loop; bf16 runs the decoder under autocast, tf32 enables tf32 matmuls."""
    with torch_precision(z0.device, precision):
        return pgd_ref(decoder, z0, centre, target, eps, alpha, steps).to(z0.dtype)


def torch_decode(decoder: nn.Module, z: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    with torch_precision(z.device, precision):
        return decoder(z).to(z.dtype)


TORCH = register(
    Engine(
        "torch",
        "the reference: autograd through any nn.Module decoder, any device (bf16: autocast)",
        torch_pgd,
        torch_decode,
    )
)
