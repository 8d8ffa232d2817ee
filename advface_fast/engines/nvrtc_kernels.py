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
stream): the elementwise half of :class:`~advface_fast.engines.nvrtc_loop.PyPgdLoop`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.activations import ACT_CODES, OUT_ACT_CODES

SOURCE = "cuda_kernels.cuh"
HEADERS = (SOURCE, "epilogues.h")
THREADS = 256  # kernels::kThreads
MAX_BLOCKS = 65535  # kernels::kMaxBlocks
VEC = 8  # kernels::kVec: elements per thread and iteration in the packed (16-byte) path
# nvcc's flags for the device code (setup.py) that NVRTC does not already default to
OPTIONS = ("-std=c++17",)
_C_TYPE = {torch.float32: "float", torch.bfloat16: "unsigned short"}  # bf16 travels as uint16_t


def source_dir() -> Path | None:
    """The folder holding the kernel sources: the installed copy (``advface_fast/_csrc``), else
    the source checkout's ``csrc/`` (editable installs); None when neither has them."""
    package = Path(__file__).resolve().parent.parent
    for folder in (package / "_csrc", package.parent / "csrc"):
        if all((folder / name).is_file() for name in HEADERS):
            return folder
    return None


def _ns(kernel: str, *types: str) -> str:
    return f"advface::kernels::{kernel}<{', '.join(types)}>"


def name_expressions() -> list[str]:
    """Every instantiation the launchers use (the nvcc build instantiates the same ones)."""
    types = list(_C_TYPE.values())
    names = [_ns("clipped_sign_step", "float4"), _ns("clipped_sign_step", "float")]
    for n in (str(VEC), "1"):
        names += [_ns("to_bf16", n)]
        names += [_ns("out_activation", n, t) for t in types] + [_ns("act_forward", n, t) for t in types]
        names += [_ns("l1_sign_out_grad", n, a, g) for a in types for g in types]
        names += [_ns("act_backward", n, g, a) for g in types for a in types]
    return names


def source_code(folder: Path | None = None) -> str:
    """The program NVRTC compiles: an include of the kernel header, behind a digest of the
    headers' text. CuPy caches compiled modules on disk keyed by the program text and options,
    not by what it includes: without the digest an upgraded header would load a stale binary."""
    folder = folder or source_dir()
    digest = hashlib.sha256(b"".join((folder / name).read_bytes() for name in HEADERS)).hexdigest() if folder else ""
    return f'// advface_fast kernels, headers sha256 {digest}\n#include "{SOURCE}"\n'


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
    prog = nvrtc.createProgram(source_code(folder), "advface_kernels.cu", [], [])
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
        mod = cupy.RawModule(
            code=source_code(folder), options=compile_options(folder), name_expressions=name_expressions()
        )
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


def _pack_aligned(*tensors: torch.Tensor) -> bool:
    """kernels::pack_aligned for every tensor: readable as packs of VEC elements."""
    return all(t.data_ptr() % (t.element_size() * VEC) == 0 for t in tensors)


class NvrtcKernels:
    """The loop's elementwise kernels on contiguous CUDA tensors of one device, launched on torch's
    current stream (so they order with torch's GEMMs and are captured by ``torch.cuda.graph``).
    The methods mirror the nvcc build's launchers (``csrc/epilogues.cu``, ``clipped_sign_step.cu``):
    packs of VEC elements over the aligned body, one element per thread over the tail;
    :class:`~advface_fast.engines.nvrtc_loop.TorchKernels` is their torch twin."""

    def __init__(self, device: torch.device) -> None:
        self.device = device.index if device.index is not None else torch.cuda.current_device()
        self._mod = module(self.device)
        self._fns: dict[str, Any] = {}

    def _launch(self, name: str, iterations: int, args: Sequence[Any]) -> None:
        import cupy

        if iterations <= 0:
            return
        fn = self._fns.get(name)
        if fn is None:
            fn = self._fns[name] = self._mod.get_function(name)
        stream = cupy_stream(torch.cuda.current_stream(self.device).cuda_stream, self.device)
        with cupy.cuda.Device(self.device), stream:
            fn((_blocks(iterations),), (THREADS,), tuple(args))

    def _packs_then_tail(self, kernel: str, types: Sequence[str], tensors: Sequence[torch.Tensor], n: int, *extra):
        """kernels::packs_then_tail: ``kernel<VEC, types>`` over whole packs, ``kernel<1, types>`` over the rest."""
        ptrs, done = [_ptr(t) for t in tensors], 0
        if n >= VEC and _pack_aligned(*tensors):
            packs = n // VEC
            self._launch(_ns(kernel, str(VEC), *types), packs, (*ptrs, np.int64(0), np.int64(packs), *extra))
            done = packs * VEC
        if done < n:
            self._launch(_ns(kernel, "1", *types), n - done, (*ptrs, np.int64(done), np.int64(n), *extra))

    def to_bf16(self, x: torch.Tensor, out: torch.Tensor) -> None:
        self._packs_then_tail("to_bf16", (), (x, out), x.numel())

    def act_forward(self, a: torch.Tensor, out: torch.Tensor, act: str, slope: float) -> None:
        extra = (np.int32(ACT_CODES[act]), np.float32(slope))
        self._packs_then_tail("act_forward", (_C_TYPE[a.dtype],), (a, out), a.numel(), *extra)

    def l1_sign_out_grad(self, a: torch.Tensor, target: torch.Tensor, g: torch.Tensor, out_act: str) -> None:
        types = (_C_TYPE[a.dtype], _C_TYPE[g.dtype])
        self._packs_then_tail("l1_sign_out_grad", types, (a, target, g), a.numel(), np.int32(OUT_ACT_CODES[out_act]))

    def act_backward(self, g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> None:
        extra = (np.int32(ACT_CODES[act]), np.float32(slope))
        self._packs_then_tail("act_backward", (_C_TYPE[g.dtype], _C_TYPE[a.dtype]), (g, a), g.numel(), *extra)

    def out_activation(self, a: torch.Tensor, y: torch.Tensor, out_act: str) -> None:
        self._packs_then_tail(
            "out_activation", (_C_TYPE[a.dtype],), (a, y), a.numel(), np.int32(OUT_ACT_CODES[out_act])
        )

    def clipped_sign_step(self, z: torch.Tensor, g: torch.Tensor, c: torch.Tensor, eps: float, alpha: float) -> None:
        """As ``clipped_sign_step_cuda``: float4 over the 16-byte-aligned body, scalar over the tail."""
        n, done = z.numel(), 0
        scalars = (np.float32(eps), np.float32(alpha))
        if all(t.data_ptr() % 16 == 0 for t in (z, g, c)):
            n4 = n // 4
            args = (_ptr(z), _ptr(g), _ptr(c), np.int64(0), np.int64(n4), *scalars)
            self._launch(_ns("clipped_sign_step", "float4"), n4, args)
            done = 4 * n4
        if done < n:
            args = (_ptr(z), _ptr(g), _ptr(c), np.int64(done), np.int64(n), *scalars)
            self._launch(_ns("clipped_sign_step", "float"), n - done, args)
