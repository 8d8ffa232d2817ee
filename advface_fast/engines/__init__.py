"""The engines that run the AdvFace loop, and the registry that picks one (``backend=``).

==================  ======================================================================  =======================
name                what it is                                                              module
==================  ======================================================================  =======================
``torch``           the reference: autograd through any decoder, any device                 ``torch_reference.py``
``mlp-eager``       MLPDecoder, backward written out, weights converted once (alias mlp)    ``mlp_eager.py``
``triton-pointer``  MLPDecoder fused in Triton, pointer GEMM kernel                         ``triton_fused.py``
``triton-tma``      the same with the TMA GEMM kernel (bf16, Hopper and newer)              ``triton_fused.py``
``cuda-compiled``   MLPDecoder, loop in C++ on cuBLASLt and our CUDA kernels                ``cuda_loop.py``
``cuda-nvrtc``      the same kernels compiled by NVRTC, loop in Python                      ``cuda_loop.py``
==================  ======================================================================  =======================

Families: ``triton`` and ``cuda`` resolve to the best of their variants here; ``auto`` walks
:data:`~advface_fast.engines.registry.AUTO_ORDER`. See ``README.md`` in this folder for how a step
flows and how to add an engine.
"""

from __future__ import annotations

# each module registers its engines; this is the order the CLI lists them in
# isort: off
from . import torch_reference, mlp_eager, triton_fused, cuda_loop  # noqa: F401

# isort: on
from .batch import protect_batch
from .registry import (
    AUTO_ORDER,
    ENGINES,
    FAMILIES,
    Engine,
    Family,
    auto_candidates,
    available_backends,
    backend_names,
    resolve_backend,
)

BACKEND_NAMES = backend_names()

__all__ = [
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "ENGINES",
    "FAMILIES",
    "Engine",
    "Family",
    "auto_candidates",
    "available_backends",
    "backend_names",
    "protect_batch",
    "resolve_backend",
]
