"""The environment switches of the engines, read here and nowhere else.

Each is an override for a person debugging or measuring one engine; the normal way to choose an
engine is ``backend=`` (the names of :mod:`advface_fast.engines`). They are read at every call, so
a test's ``monkeypatch.setenv`` takes effect at once.

========================  ===========================  =================================================
variable                  values (default first)       effect
========================  ===========================  =================================================
``ADVFACE_CUDA_LOOP``     ``auto``, compiled, nvrtc    which loop ``backend="cuda"`` runs (auto: the
                                                       compiled C++ loop where it can run, else NVRTC)
``ADVFACE_TRITON_GEMM``   ``auto``, tma, pointer       which GEMM kernel ``backend="triton"`` runs (auto:
                                                       TMA on compute capability >= 9, else pointer)
``ADVFACE_CPU_AMX``       ``1``, 0                     the eager engine's bf16 AMX tile kernel on CPUs
                                                       that have AMX (0: oneDNN only)
``ADVFACE_CPU_PACKED``    ``1``, 0                     the eager engine's oneDNN-packed weights on the
                                                       CPU (0: plain addmm, the reference's bytes)
``TRITON_INTERPRET``      ``0``, 1                     Triton's own switch: kernels run on the CPU under
                                                       its interpreter (a correctness tool for tests)
========================  ===========================  =================================================

This module sits at the bottom of the import graph (the Triton kernels read it too).
"""

from __future__ import annotations

import os

CUDA_LOOPS = ("auto", "compiled", "nvrtc")
TRITON_GEMMS = ("auto", "tma", "pointer")


def _choice(variable: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(variable, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{variable}={value!r} is not one of {', '.join(choices)}")
    return value


def cuda_loop() -> str:
    """``ADVFACE_CUDA_LOOP``: ``"auto"`` (unset), ``"compiled"`` or ``"nvrtc"``."""
    return _choice("ADVFACE_CUDA_LOOP", CUDA_LOOPS)


def triton_gemm() -> str:
    """``ADVFACE_TRITON_GEMM``: ``"auto"`` (unset), ``"tma"`` or ``"pointer"``."""
    return _choice("ADVFACE_TRITON_GEMM", TRITON_GEMMS)


def cpu_amx() -> bool:
    """``ADVFACE_CPU_AMX`` is not ``0``."""
    return os.environ.get("ADVFACE_CPU_AMX", "1") != "0"


def cpu_packed() -> bool:
    """``ADVFACE_CPU_PACKED`` is not ``0``."""
    return os.environ.get("ADVFACE_CPU_PACKED", "1") != "0"


def triton_interpret() -> bool:
    """``TRITON_INTERPRET=1``: Triton runs its kernels on the CPU."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
