"""Engines ``"cuda-compiled"`` and ``"cuda-nvrtc"`` (family ``"cuda"``: compiled where it can run,
else NVRTC; ``ADVFACE_CUDA_LOOP`` overrides): the protection loop for
:class:`~advface_fast.models.decoders.MLPDecoder` on cuBLAS(Lt) GEMMs and the package's CUDA kernels.

``cuda-compiled`` drives the loop from C++ (``csrc/pgd_loop.cu``): cuBLASLt GEMMs with the bias
epilogue, the elementwise kernels of ``csrc/epilogues.cu`` and the sign step of
``csrc/clipped_sign_step.cu``, the ``steps`` of a batch captured in one CUDA graph from the second
batch of a shape on. ``cuda-nvrtc`` (:class:`~advface_fast.engines.nvrtc_loop.PyPgdLoop`) runs the
same kernels compiled at run time by NVRTC through CuPy, torch's cuBLAS GEMMs and the loop in
Python under :class:`~advface_fast.engines.cuda_graphs.GraphRunner`: for installs without nvcc or
cublasLt.h.

This module owns the memory (torch tensors: weights in the GEMM dtype, activations, gradients,
a cuBLASLt workspace) and hands raw device addresses to the extension, which has no libtorch
ABI. A plan is built per (decoder weights, device, precision, batch size, loop) and kept in
:data:`PLANS` (:class:`~advface_fast.engines.plan_cache.PlanCache`).

Arithmetic: the same as the eager engine (GEMM operands and outputs in the GEMM dtype, fp32
accumulation; the output activation, the L1 sign, the projection and ``z`` in fp32), with
cuBLAS's choice of summation order.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.activations import ACT_CODES, OUT_ACT_CODES
from ..models.decoders import MLPDecoder
from . import extension as _ext
from . import overrides
from .mlp_eager import GEMM_DTYPE
from .ops import DTYPE_CODES
from .plan_cache import PlanCache
from .registry import Engine, Family, mlp_decoder_only, nvidia_gpu_only, register

WORKSPACE_BYTES = 32 << 20  # cuBLASLt's recommended workspace on Hopper
PLANS_PER_DECODER = 4  # full batches and a tail batch or two; older plans are dropped
LOOP_IMPLS = overrides.CUDA_LOOPS  # ("auto", "compiled", "nvrtc")


def _cublaslt_candidates() -> list[str]:
    """libcublasLt files shipped as Python wheels (torch's CUDA builds depend on them), then ''
    (the extension then tries the sonames, which also finds a copy torch has already loaded)."""
    found = []
    for root in sys.path:
        for sub in ("nvidia/cu13/lib/libcublasLt.so.13", "nvidia/cublas/lib/libcublasLt.so.12"):
            p = Path(root) / sub
            if p.is_file():
                found.append(str(p))
    return [*found, ""]


@functools.lru_cache(maxsize=1)
def compiled_unavailable_reason() -> str | None:
    """None if the compiled C++ loop can run in this process, else why not (checked once)."""
    ext = _ext.load()
    if ext is None:
        return _ext.load_error()
    info = ext.build_info()
    if not info.get("cuda"):
        return "advface_fast._C was built without its CUDA part (no nvcc at build time, or ADVFACE_SKIP_CUDA=1)"
    if not info.get("cuda_loop"):
        return "advface_fast._C was built without the CUDA loop (cublasLt.h not found; see ADVFACE_CUBLASLT_INCLUDE)"
    errors = []
    for path in _cublaslt_candidates():
        err = ext.load_cublaslt(path)
        if not err:
            return None
        errors.append(err)
    return errors[-1]


def loop_impl() -> str:
    """The loop implementation ``ADVFACE_CUDA_LOOP`` asks for (``auto`` when unset)."""
    return overrides.cuda_loop()


def candidate_impls() -> tuple[str, ...]:
    """The loops to try, in order: compiled then nvrtc, or the one ``ADVFACE_CUDA_LOOP`` names
    (the ``cuda`` family's variants are these)."""
    impl = loop_impl()
    return ("compiled", "nvrtc") if impl == "auto" else (impl,)


def impl_unavailable_reason(impl: str) -> str | None:
    """None if loop ``impl`` (``"compiled"`` or ``"nvrtc"``) can run in this process, else why not."""
    if impl == "compiled":
        return compiled_unavailable_reason()
    from .nvrtc_kernels import unavailable_reason as nvrtc_reason

    return nvrtc_reason()


def _resolve() -> tuple[str | None, str | None]:
    """``(implementation that runs, None)`` or ``(None, why neither can)``."""
    reasons = {}
    for cand in candidate_impls():
        reasons[cand] = impl_unavailable_reason(cand)
        if reasons[cand] is None:
            return cand, None
    return None, "; ".join(f"{k} loop: {v}" for k, v in reasons.items())


def unavailable_reason() -> str | None:
    """None if the CUDA backend can run in this process (compiled loop or its NVRTC fallback,
    as ``ADVFACE_CUDA_LOOP`` allows), else why not."""
    return _resolve()[1]


def active_impl() -> str | None:
    """``"compiled"`` or ``"nvrtc"``: the loop implementation the backend uses here (None: neither)."""
    return _resolve()[0]


@dataclass
class _Plan:
    impl: str  # "compiled" or "nvrtc"
    loop: Any
    tensors: dict[str, Any]  # everything the loop points into: kept alive with the plan
    out_shape: tuple[int, int, int]

    @property
    def z(self) -> torch.Tensor:
        return self.tensors["z"]


PLANS: PlanCache[_Plan] = PlanCache(per_decoder=PLANS_PER_DECODER)


def plan_buffers(decoder: MLPDecoder, device: torch.device, precision: str, batch: int) -> dict[str, Any]:
    """Every tensor a loop over ``batch`` rows works in (layout in ``csrc/pgd_loop.h``): weights and
    biases in the GEMM dtype of ``precision``, activations and gradients, z/centre/target/image."""
    dt = GEMM_DTYPE[precision]
    layers = list(decoder.layers)
    widths = [decoder.in_dim, *decoder.hidden, layers[-1].out_features]

    def buf(width: int, dtype: torch.dtype = dt) -> torch.Tensor:
        return torch.empty(batch, width, device=device, dtype=dtype)

    with torch.no_grad():
        return {
            "weights": [lay.weight.detach().to(device=device, dtype=dt).contiguous() for lay in layers],
            "biases": [lay.bias.detach().to(device=device, dtype=dt).contiguous() for lay in layers],
            "pre": [buf(w) for w in widths[1:]],
            "hidden": [buf(w) for w in widths[1:-1]],
            "grad_hidden": [buf(w) for w in widths[1:-1]],
            "z": buf(widths[0], torch.float32),
            "centre": buf(widths[0], torch.float32),
            "target": buf(widths[-1], torch.float32),
            "z_in": buf(widths[0]),
            "grad_out": buf(widths[-1]),
            "grad_z": buf(widths[0], torch.float32),
            "image": buf(widths[-1], torch.float32),
        }


def build_plan(decoder: MLPDecoder, device: torch.device, precision: str, batch: int, impl: str) -> _Plan:
    """A loop of implementation ``impl`` over new buffers for ``batch`` rows."""
    t = plan_buffers(decoder, device, precision, batch)
    if impl == "nvrtc":
        from .nvrtc_loop import PyPgdLoop

        loop = PyPgdLoop(t, precision, decoder.act, decoder.out_act, decoder.negative_slope)
        return _Plan(impl, loop, t, decoder.out_shape)
    t["workspace"] = torch.empty(WORKSPACE_BYTES, device=device, dtype=torch.uint8)
    ptrs = {k: [x.data_ptr() for x in v] if isinstance(v, list) else v.data_ptr() for k, v in t.items()}
    loop = _ext.load().PgdLoop(
        device=device.index if device.index is not None else torch.cuda.current_device(),
        batch=batch,
        widths=[decoder.in_dim, *decoder.hidden, decoder.layers[-1].out_features],
        gemm_dtype=DTYPE_CODES[GEMM_DTYPE[precision]],
        tf32=precision == "tf32",
        act=ACT_CODES[decoder.act],
        out_act=OUT_ACT_CODES[decoder.out_act],
        slope=decoder.negative_slope,
        workspace_bytes=WORKSPACE_BYTES,
        **ptrs,
    )
    return _Plan(impl, loop, t, decoder.out_shape)


def _plan(decoder: MLPDecoder, device: torch.device, precision: str, batch: int, impl: str | None) -> _Plan:
    impl = impl or active_impl()
    if impl is None:
        raise RuntimeError(f"the CUDA backend cannot run here: {unavailable_reason()}")
    slot = (str(device), precision, batch, impl)
    return PLANS.get(decoder, slot, lambda: build_plan(decoder, device, precision, batch, impl))


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def _on(device: torch.device) -> contextlib.AbstractContextManager:
    """The device's context (the loops launch on the current device); none off CUDA, where only
    the Python-driven loop with torch kernels runs (the CPU tests of this module's plumbing)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def cuda_pgd(
    decoder: MLPDecoder,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    precision: str = "fp32",
    impl: str | None = None,
) -> torch.Tensor:
    """:func:`~advface_fast.engines.reference.pgd_ref` on the CUDA loop ``impl`` (``"compiled"``,
    ``"nvrtc"``; None: :func:`active_impl`); shapes as there, ``z0``'s dtype out."""
    plan = _plan(decoder, z0.device, precision, z0.shape[0], impl)
    plan.z.copy_(z0)
    plan.tensors["centre"].copy_(centre)
    plan.tensors["target"].copy_(target.reshape(target.shape[0], -1))
    if steps > 0:
        with _on(z0.device):
            plan.loop.run(int(steps), float(eps), float(alpha), _stream(z0.device))
    return plan.z.clone().to(z0.dtype)


@torch.no_grad()
def cuda_decode(decoder: MLPDecoder, z: torch.Tensor, precision: str = "fp32", impl: str | None = None) -> torch.Tensor:
    """``S(z)`` ``(B, C, H, W)`` with the loop's forward arithmetic, in ``z``'s dtype."""
    plan = _plan(decoder, z.device, precision, z.shape[0], impl)
    plan.z.copy_(z)
    with _on(z.device):
        plan.loop.decode(_stream(z.device))
    return plan.tensors["image"].clone().reshape(z.shape[0], *plan.out_shape).to(z.dtype)


def _engine(impl: str, description: str) -> Engine:
    def loop_ready(decoder, device, precision):
        return impl_unavailable_reason(impl)

    checks = (nvidia_gpu_only("cuda"), mlp_decoder_only("the CUDA engine"), loop_ready)
    pgd, decode = functools.partial(cuda_pgd, impl=impl), functools.partial(cuda_decode, impl=impl)
    return Engine(f"cuda-{impl}", description, pgd, decode, checks=checks, family="cuda")


def _variants(device: torch.device) -> tuple[str, ...]:
    return tuple(f"cuda-{impl}" for impl in candidate_impls())


CUDA = register(
    Family("cuda", "cuda-compiled where it can run, else cuda-nvrtc (ADVFACE_CUDA_LOOP overrides)", _variants)
)

CUDA_COMPILED = register(
    _engine("compiled", "MLPDecoder on NVIDIA GPUs: the loop in C++ (cuBLASLt GEMMs, our kernels, one CUDA graph)")
)
CUDA_NVRTC = register(
    _engine("nvrtc", "MLPDecoder on NVIDIA GPUs: our kernels compiled by NVRTC (CuPy), torch's cuBLAS, loop in Python")
)
