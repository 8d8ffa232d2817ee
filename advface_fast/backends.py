"""Backend registry: which implementation runs the PGD loop.

``"torch"`` is the reference and runs anywhere with any ``nn.Module`` decoder. ``"mlp"`` is the same
arithmetic for :class:`~advface_fast.decoders.MLPDecoder` with the backward written out and the
weights cached in the GEMM dtype (``mlp_engine.py``; any device). ``"triton"`` is the
fused engine for :class:`~advface_fast.decoders.MLPDecoder` (NVIDIA GPUs; on the CPU only under
Triton's interpreter, ``TRITON_INTERPRET=1``, which is for tests). ``"cuda"`` is the CUDA C++
engine in ``csrc/`` (cuBLASLt GEMMs and our elementwise kernels, the loop in C++, one CUDA graph
per batch shape; ``cuda_engine.py``), or, on installs built without nvcc, its fallback: the same
kernels compiled at run time by NVRTC through CuPy, driven from Python (``nvrtc_loop.py``).
``backend="auto"`` takes the fastest one that can run the given decoder on the given device and
falls back silently to ``"torch"``; a backend asked for by name that cannot run raises
:class:`~advface_fast.errors.BackendUnavailableError` with the reason.

Every backend's loop has the signature of :func:`~advface_fast.reference.pgd_ref` plus
``precision``: ``"fp32"`` (IEEE fp32 GEMMs), ``"tf32"`` (tensor-core tf32, CUDA only) or
``"bf16"`` (bf16 GEMM operands, fp32 accumulation; the sign, the projection and z stay fp32).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .engine import PGDFn
from .errors import BackendUnavailableError
from .reference import pgd_ref
from .settings import PRECISIONS

BACKEND_NAMES = ("auto", "torch", "mlp", "triton", "cuda")


@dataclass(frozen=True)
class Backend:
    """A named implementation: ``pgd`` has :func:`~advface_fast.reference.pgd_ref`'s signature plus
    ``precision``; ``decode(decoder, z, precision)`` computes the shadow image ``S(z)`` with the
    same arithmetic as the loop's forward (so that at ``z`` itself the L1 signs are exact zeros)."""

    name: str
    pgd: PGDFn
    decode: Callable[..., torch.Tensor]


@contextlib.contextmanager
def _torch_precision(device: torch.device, precision: str) -> Iterator[None]:
    if precision == "fp32":
        yield
    elif precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:  # tf32, CUDA only (checked by resolve_backend)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev


def torch_pgd(decoder, z0, centre, target, eps, alpha, steps, precision="fp32"):
    """The reference loop; bf16 runs the decoder under autocast, tf32 enables tf32 matmuls."""
    with _torch_precision(z0.device, precision):
        return pgd_ref(decoder, z0, centre, target, eps, alpha, steps).to(z0.dtype)


def torch_decode(decoder, z, precision="fp32"):
    with _torch_precision(z.device, precision):
        return decoder(z).to(z.dtype)


def mlp_pgd(decoder, z0, centre, target, eps, alpha, steps, precision="fp32"):
    """The written-out MLPDecoder loop (``mlp_engine.py``); bf16 through its cached bf16 weights."""
    from .mlp_engine import mlp_pgd as run

    with _torch_precision(z0.device, "tf32" if precision == "tf32" else "fp32"):
        return run(decoder, z0, centre, target, eps, alpha, steps, precision)


def mlp_decode(decoder, z, precision="fp32"):
    from .mlp_engine import mlp_decode as run

    with _torch_precision(z.device, "tf32" if precision == "tf32" else "fp32"):
        return run(decoder, z, precision)


def cuda_pgd(decoder, z0, centre, target, eps, alpha, steps, precision="fp32"):
    """The C++-driven CUDA loop (``cuda_engine.py``, ``csrc/pgd_loop.cu``)."""
    from .cuda_engine import cuda_pgd as run

    return run(decoder, z0, centre, target, eps, alpha, steps, precision)


def cuda_decode(decoder, z, precision="fp32"):
    from .cuda_engine import cuda_decode as run

    return run(decoder, z, precision)


def triton_pgd(decoder, z0, centre, target, eps, alpha, steps, precision="fp32"):
    """The fused Triton engine (``kernels/pgd_mlp.py``); float32 in, float32 out."""
    from .kernels.pgd_mlp import pgd_mlp, plan_for

    return pgd_mlp(plan_for(decoder, z0.device, precision), z0, centre, target, eps, alpha, steps).to(z0.dtype)


def triton_decode(decoder, z, precision="fp32"):
    from .kernels.pgd_mlp import decode_mlp, plan_for

    return decode_mlp(plan_for(decoder, z.device, precision), z).reshape(z.shape[0], *decoder.out_shape)


@functools.lru_cache(maxsize=1)
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401

        from .kernels import pgd_mlp  # noqa: F401
    except Exception as exc:  # ImportError, or a Triton that fails to initialise
        return f"Triton is not usable here ({type(exc).__name__}: {exc})"
    return None


def _mlp_decoder_only(label: str, decoder: nn.Module) -> str | None:
    """The fast engines' decoder family: exactly :class:`~advface_fast.decoders.MLPDecoder` (a
    subclass may change ``forward``, which the engines would not see)."""
    from .decoders import MLPDecoder

    if type(decoder) is not MLPDecoder:
        return f"{label} runs MLPDecoder only, got {type(decoder).__name__}"
    return None


def _unavailable_reason(name: str, decoder: nn.Module, device: torch.device, precision: str) -> str | None:
    """``None`` if backend ``name`` can run ``decoder`` on ``device``, else the reason it cannot."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    if precision == "tf32" and device.type != "cuda":
        return "precision 'tf32' needs a CUDA device"
    if name == "torch":
        return None
    param = next(decoder.parameters(), None)
    label = {"mlp": "the mlp engine", "triton": "the fused engine", "cuda": "the CUDA engine"}[name]
    reason = _mlp_decoder_only(label, decoder)
    if name == "mlp":
        if reason is not None:
            return reason
        if param is not None and param.dtype != torch.float32:
            return f"the mlp engine takes a float32 decoder (precision is chosen with precision=), got {param.dtype}"
        return None
    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    if device.type != "cuda" and not (name == "triton" and interpreting and device.type == "cpu"):
        return f"the {name} backend runs on NVIDIA GPUs; the compute device is {device}"
    if param is not None and param.dtype != torch.float32:
        return f"the fused engines take a float32 decoder (precision is chosen with precision=), got {param.dtype}"
    if reason is not None:
        return reason
    if name == "triton":
        return _triton_import_error()
    from .cuda_engine import unavailable_reason

    return unavailable_reason()


_IMPLS = {
    "torch": (torch_pgd, torch_decode),
    "mlp": (mlp_pgd, mlp_decode),
    "triton": (triton_pgd, triton_decode),
    "cuda": (cuda_pgd, cuda_decode),
}


def _auto_candidates(device: torch.device, precision: str) -> tuple[str, ...]:
    """Backends ``auto`` tries, fastest first, from measurements (benchmarks/results/gpu-NVIDIA-H100-80GB-HBM3,
    one run, standard configuration, batch 8192, features/s): the cuda backend is the fastest in
    every precision: fp32 44.3k (torch eager 40.3k), tf32 251k (176k), bf16 497k (Triton 445k,
    torch.compile 418k, torch eager 240k), and in bf16 at every batch size from 1 to 131,072; its
    steps equal torch's at the same precision against an fp64 oracle. Without it, Triton for bf16
    (slower than cuBLAS in fp32/tf32: IEEE fp32 dots on CUDA cores), else torch. The interpreter
    (TRITON_INTERPRET=1) is a correctness tool, never picked by auto. On the CPU the written-out
    MLP loop is the reference's arithmetic without autograd and, in bf16, without autocast's
    per-call weight casts (benchmarks/results/cpu_bench.json)."""
    if device.type != "cuda":
        return ("mlp", "torch")
    if precision == "bf16" and os.environ.get("TRITON_INTERPRET") != "1":
        return ("cuda", "triton", "torch")
    return ("cuda", "torch")


def resolve_backend(name: str, decoder: nn.Module, device: torch.device, precision: str = "fp32") -> Backend:
    """The backend that will run ``decoder`` on ``device`` for ``backend=name``."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend={name!r} is not one of {', '.join(map(repr, BACKEND_NAMES))}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(map(repr, PRECISIONS))}")
    candidates = _auto_candidates(device, precision) if name == "auto" else (name,)
    for cand in candidates:
        reason = _unavailable_reason(cand, decoder, device, precision)
        if reason is None:
            return Backend(cand, *_IMPLS[cand])
        if name != "auto":
            raise BackendUnavailableError(f"backend {cand!r} cannot run here: {reason}")
    raise BackendUnavailableError(
        f"no backend can run here: {_unavailable_reason('torch', decoder, device, precision)}"
    )


def available_backends(
    decoder: nn.Module | None = None, device: str | torch.device = "cpu", precision: str = "fp32"
) -> dict[str, str | None]:
    """``{name: None if it can run, else the reason}`` for each concrete backend."""
    from .decoders import MLPDecoder

    dec = decoder if decoder is not None else MLPDecoder(8, [8], (1, 2, 2))
    dev = torch.device(device)
    return {n: _unavailable_reason(n, dec, dev, precision) for n in BACKEND_NAMES[1:]}
