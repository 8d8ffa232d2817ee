"""The package's CUDA kernels compiled at run time by NVRTC through CuPy: the CUDA backend's
fallback for installs without nvcc (``pip install advface_fast[cupy]`` on a machine with a GPU
driver but no CUDA toolkit).

The source is the very file nvcc compiles, ``csrc/cuda_kernels.cuh`` (with ``csrc/epilogues.h``
for the math), shipped inside the package as ``advface_fast/_csrc/``; every kernel is a template
in ``advface::kernels`` fetched by its name expression (``cupy.RawModule(name_expressions=...)``),
so the two compilers build the same instantiations from the same text. NVRTC's defaults are
nvcc's for device code (``-fmad=true``, IEEE division and square root, no flush to zero), so
both builds do the same arithmetic.

:class:`NvrtcKernels` launches them on torch tensors (raw device addresses, torch's current
stream): the elementwise half of :class:`~advface_fast.nvrtc_loop.PyPgdLoop`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .ops import ACT_CODES, OUT_ACT_CODES

SOURCE = "cuda_kernels.cuh"
HEADERS = (SOURCE, "epilogues.h")
THREADS = 256  # kernels::kThreads
MAX_BLOCKS = 65535  # kernels::kMaxBlocks
# nvcc's flags for the device code (setup.py) that NVRTC does not already default to
OPTIONS = ("-std=c++17",)
_C_TYPE = {torch.float32: "float", torch.bfloat16: "unsigned short"}  # bf16 travels as uint16_t


def source_dir() -> Path | None:
    """The folder holding the kernel sources: the installed copy (``advface_fast/_csrc``), else
    the source checkout's ``csrc/`` (editable installs); None when neither has them."""
    here = Path(__file__).resolve().parent
    for folder in (here / "_csrc", here.parent / "csrc"):
        if all((folder / name).is_file() for name in HEADERS):
            return folder
    return None


def _ns(kernel: str, *types: str) -> str:
    return f"advface::kernels::{kernel}<{', '.join(types)}>"


def name_expressions() -> list[str]:
    """Every instantiation the launchers use (the nvcc build instantiates the same ones)."""
    types = list(_C_TYPE.values())
    names = [_ns("clipped_sign_step", "float4"), _ns("clipped_sign_step", "float"), _ns("to_bf16", "float")]
    names += [_ns("out_activation", t) for t in types] + [_ns("act_forward", t) for t in types]
    names += [_ns("l1_sign_out_grad", a, g) for a in types for g in types]
    names += [_ns("act_backward", g, a) for g in types for a in types]
    return names


def source_code() -> str:
    return f'#include "{SOURCE}"\n'


def compile_options(folder: Path) -> tuple[str, ...]:
    return (*OPTIONS, f"-I{folder}")


def compile_ptx(arch: str, folder: Path | None = None) -> tuple[str, dict[str, str]]:
    """Compile the kernels with NVRTC for virtual architecture ``arch`` (e.g. ``"compute_90"``)
    without a GPU: ``(PTX text, {name expression: mangled entry name})``. The run-time path
    (:func:`module`) compiles the same source with the same options for the local GPU.
    Raises RuntimeError with NVRTC's log when compilation fails."""
    from cupy.cuda import nvrtc

    folder = folder or source_dir()
    if folder is None:
        raise RuntimeError("the CUDA kernel sources (csrc/cuda_kernels.cuh) are not installed")
    prog = nvrtc.createProgram(source_code(), "advface_kernels.cu", [], [])
    try:
        names = name_expressions()
        for name in names:
            nvrtc.addNameExpression(prog, name)
        try:
            nvrtc.compileProgram(prog, [*compile_options(folder), f"-arch={arch}"])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC failed for {arch}: {exc}\n{nvrtc.getProgramLog(prog)}") from exc
        ptx = nvrtc.getPTX(prog)
        lowered = {name: nvrtc.getLoweredName(prog, name) for name in names}
    finally:
        nvrtc.destroyProgram(prog)
    return (ptx.decode() if isinstance(ptx, bytes) else ptx), lowered


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None if the NVRTC kernels can run in this process (CuPy, NVRTC, a GPU, the sources), else why not."""
    try:
        import cupy
        from cupy.cuda import nvrtc
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); install advface_fast[cupy]"
    if source_dir() is None:
        return "the CUDA kernel sources (csrc/cuda_kernels.cuh) are not installed"
    try:
        nvrtc.getVersion()
    except Exception as exc:
        return f"CuPy cannot load NVRTC ({type(exc).__name__}: {exc}); install nvidia-cuda-nvrtc"
    try:
        if not cupy.cuda.is_available():
            return "CuPy sees no CUDA device"
    except Exception as exc:
        return f"CuPy cannot reach a CUDA device ({type(exc).__name__}: {exc})"
    return None


@functools.lru_cache(maxsize=8)
def module(device: int) -> Any:
    """The compiled ``cupy.RawModule`` for GPU ``device`` (compiled once per process and device;
    CuPy also caches the binary on disk)."""
    import cupy

    folder = source_dir()
    if folder is None:
        raise RuntimeError("the CUDA kernel sources (csrc/cuda_kernels.cuh) are not installed")
    with cupy.cuda.Device(device):
        mod = cupy.RawModule(code=source_code(), options=compile_options(folder), name_expressions=name_expressions())
        mod.compile()
    return mod


class _StreamHandle:
    """A raw ``cudaStream_t`` in the CUDA stream protocol (for ``cupy.cuda.Stream.from_external``)."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.ptr)


def cupy_stream(ptr: int, device: int) -> Any:
    """A CuPy view of the CUDA stream ``ptr`` (CuPy 14's protocol, else CuPy 13's ExternalStream)."""
    import cupy

    if hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(_StreamHandle(ptr))
    return cupy.cuda.ExternalStream(ptr, device)


def _blocks(n: int) -> int:
    return min((n + THREADS - 1) // THREADS, MAX_BLOCKS)


def _ptr(t: torch.Tensor) -> np.uint64:
    return np.uint64(t.data_ptr())


class NvrtcKernels:
    """The loop's elementwise kernels on contiguous CUDA tensors of one device, launched on torch's
    current stream (so they order with torch's GEMMs and are captured by ``torch.cuda.graph``).
    The methods mirror the nvcc build's launchers (``csrc/epilogues.cu``, ``clipped_sign_step.cu``,
    ``pgd_loop.cu``) and :class:`~advface_fast.nvrtc_loop.TorchKernels`, their torch twin."""

    def __init__(self, device: torch.device) -> None:
        self.device = device.index if device.index is not None else torch.cuda.current_device()
        self._mod = module(self.device)
        self._fns: dict[str, Any] = {}

    def _launch(self, name: str, n: int, args: Sequence[Any]) -> None:
        import cupy

        if n <= 0:
            return
        fn = self._fns.get(name)
        if fn is None:
            fn = self._fns[name] = self._mod.get_function(name)
        with (
            cupy.cuda.Device(self.device),
            cupy_stream(torch.cuda.current_stream(self.device).cuda_stream, self.device),
        ):
            fn((_blocks(n),), (THREADS,), tuple(args))

    def to_bf16(self, x: torch.Tensor, out: torch.Tensor) -> None:
        self._launch(_ns("to_bf16", "float"), x.numel(), (_ptr(x), _ptr(out), np.int64(x.numel())))

    def act_forward(self, a: torch.Tensor, out: torch.Tensor, act: str, slope: float) -> None:
        n = a.numel()
        args = (_ptr(a), _ptr(out), np.int64(n), np.int32(ACT_CODES[act]), np.float32(slope))
        self._launch(_ns("act_forward", _C_TYPE[a.dtype]), n, args)

    def l1_sign_out_grad(self, a: torch.Tensor, target: torch.Tensor, g: torch.Tensor, out_act: str) -> None:
        n = a.numel()
        args = (_ptr(a), _ptr(target), _ptr(g), np.int64(n), np.int32(OUT_ACT_CODES[out_act]))
        self._launch(_ns("l1_sign_out_grad", _C_TYPE[a.dtype], _C_TYPE[g.dtype]), n, args)

    def act_backward(self, g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> None:
        n = g.numel()
        args = (_ptr(g), _ptr(a), np.int64(n), np.int32(ACT_CODES[act]), np.float32(slope))
        self._launch(_ns("act_backward", _C_TYPE[g.dtype], _C_TYPE[a.dtype]), n, args)

    def out_activation(self, a: torch.Tensor, y: torch.Tensor, out_act: str) -> None:
        n = a.numel()
        args = (_ptr(a), _ptr(y), np.int64(n), np.int32(OUT_ACT_CODES[out_act]))
        self._launch(_ns("out_activation", _C_TYPE[a.dtype]), n, args)

    def clipped_sign_step(self, z: torch.Tensor, g: torch.Tensor, c: torch.Tensor, eps: float, alpha: float) -> None:
        """As ``clipped_sign_step_cuda``: float4 over the aligned body, scalar over the tail."""
        n, done = z.numel(), 0
        scalars = (np.float32(eps), np.float32(alpha))
        if all(t.data_ptr() % 16 == 0 for t in (z, g, c)):
            n4 = n // 4
            self._launch(
                _ns("clipped_sign_step", "float4"), n4, (_ptr(z), _ptr(g), _ptr(c), np.int64(0), np.int64(n4), *scalars)
            )
            done = 4 * n4
        if done < n:
            args = (_ptr(z), _ptr(g), _ptr(c), np.int64(done), np.int64(n), *scalars)
            self._launch(_ns("clipped_sign_step", "float"), n - done, args)
