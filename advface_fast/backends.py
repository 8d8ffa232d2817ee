"""Backend registry: which implementation runs the PGD loop.

``"torch"`` is the reference and runs anywhere with any ``nn.Module`` decoder. ``"triton"`` and
``"cuda"`` are the fused engines for :class:`~advface_fast.decoders.MLPDecoder` on NVIDIA GPUs.
``backend="auto"`` takes the fastest one that can run the given decoder on the given device and
falls back silently to ``"torch"``; a backend asked for by name that cannot run raises
:class:`~advface_fast.errors.BackendUnavailableError` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _ext
from .engine import PGDFn
from .errors import BackendUnavailableError
from .reference import pgd_ref

BACKEND_NAMES = ("auto", "torch", "triton", "cuda")


@dataclass(frozen=True)
class Backend:
    """A named implementation of the loop; ``pgd`` has :func:`~advface_fast.reference.pgd_ref`'s signature."""

    name: str
    pgd: PGDFn


def _unavailable_reason(name: str, decoder: nn.Module, device: torch.device) -> str | None:
    """``None`` if backend ``name`` can run ``decoder`` on ``device``, else the reason it cannot."""
    if name == "torch":
        return None
    if device.type != "cuda":
        return f"the {name} backend runs on NVIDIA GPUs; the compute device is {device}"
    if name == "triton":
        return "the fused Triton engine is not available yet (it is being built in kernels/)"
    ext = _ext.load()
    if ext is None:
        return _ext.load_error()
    if not ext.build_info().get("cuda"):
        return "advface_fast._C was built without its CUDA part (no nvcc at build time, or ADVFACE_SKIP_CUDA=1)"
    return "the CUDA protection loop is not available yet (only its sign-step kernel is built)"


def resolve_backend(name: str, decoder: nn.Module, device: torch.device) -> Backend:
    """The backend that will run ``decoder`` on ``device`` for ``backend=name``."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend={name!r} is not one of {', '.join(map(repr, BACKEND_NAMES))}")
    candidates = ("cuda", "triton", "torch") if name == "auto" else (name,)
    for cand in candidates:
        reason = _unavailable_reason(cand, decoder, device)
        if reason is None:
            return Backend(cand, pgd_ref)
        if name != "auto":
            raise BackendUnavailableError(f"backend {cand!r} cannot run here: {reason}")
    raise AssertionError("unreachable: the torch backend always runs")


def available_backends(decoder: nn.Module | None = None, device: str | torch.device = "cpu") -> dict[str, str | None]:
    """``{name: None if it can run, else the reason}`` for each concrete backend."""
    dec = decoder if decoder is not None else nn.Identity()
    dev = torch.device(device)
    return {n: _unavailable_reason(n, dec, dev) for n in BACKEND_NAMES[1:]}
