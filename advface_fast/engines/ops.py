"""Compiled elementwise ops of ``advface_fast._C``, each beside its torch reference (``*_ref``,
same signature):

===================================================  =============================================================
op                                                   PyTorch expression
===================================================  =============================================================
``clipped_sign_step(z, g, c, eps, alpha)``           ``torch.clamp(z + alpha * torch.sign(g), c - eps, c + eps)``
``out_activation(a, out_act)``                       ``torch.tanh(a.float())`` (or sigmoid, or identity)
``l1_sign_out_grad(a, x, out_act, dtype)``           ``tanh_backward(torch.sign(tanh(a.float()) - x), ...).to(dtype)``
``act_backward_(g, a, act, slope)``                  ``g.copy_(leaky_relu_backward(g, a, slope))`` (relu, gelu alike)
``l1_sign_grad_from_output(y, x, out_act, dtype)``   ``tanh_backward(torch.sign(y - x), y).to(dtype)`` (CPU)
===================================================  =============================================================

They are the non-GEMM parts of a step of the MLP loop (``csrc/epilogues.h`` states the math once
for the C++ and the CUDA kernels). ``clipped_sign_step`` matches its reference bit for bit; the
others equal torch's except where a transcendental (tanh, exp, erf) rounds an ulp differently
(ATen uses Sleef on the CPU). ``backend="auto"`` takes the compiled kernel on CUDA, and on the
CPU for ``clipped_sign_step`` (one pass instead of three temporaries) and
``l1_sign_grad_from_output`` (no transcendental; one vectorised pass, AVX2/AVX-512 picked at run
time, instead of ATen's four); it keeps torch on the CPU for the other three, whose vectorised
Sleef transcendentals are much faster than the C library's scalar ones the C++ kernels call - the
C++ versions are the CPU twins that test the shared math. The measurements behind these choices:
``benchmarks/results/cpu_kernel_choices.md``.
"""

from __future__ import annotations

import functools

import torch

from ..errors import BackendUnavailableError
from ..models.activations import (
    ACT_CODES,
    OUT_ACT_CODES,
    hidden_activation_backward,
    output_activation,
    output_activation_backward,
)
from . import extension as _ext
from .reference import clipped_sign_step_ref

__all__ = [
    "act_backward_",
    "act_backward_ref",
    "clipped_sign_step",
    "clipped_sign_step_ref",
    "l1_out_grad_from_output",
    "l1_sign_grad_from_output",
    "l1_sign_grad_from_output_ref",
    "l1_sign_out_grad",
    "l1_sign_out_grad_ref",
    "out_activation",
    "out_activation_ref",
]

DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1}


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


# -- the step's other elementwise parts ------------------------------------------------------------
def out_activation_ref(a: torch.Tensor, out_act: str) -> torch.Tensor:
    """``out_act(a)`` as a new float32 tensor, ``a`` float32 or bfloat16 of any shape."""
    y = output_activation(a.float(), out_act)
    return y.clone() if y is a else y


def l1_out_grad_from_output(y: torch.Tensor, target: torch.Tensor, out_act: str) -> torch.Tensor:
    """``sign(y - target) * out_act'(y)`` from the output ``y`` (float32), by ATen's own backward
    kernels: the gradient of ``sum |y - target|`` with respect to the pre-activation."""
    return output_activation_backward(torch.sign(y - target), y, out_act)  # abs' (sign(0) = 0, as autograd)


def l1_sign_grad_from_output_ref(
    y: torch.Tensor, target: torch.Tensor, out_act: str, dtype: torch.dtype
) -> torch.Tensor:
    """:func:`l1_out_grad_from_output` returned in ``dtype``."""
    return l1_out_grad_from_output(y, target, out_act).to(dtype)


def l1_sign_grad_from_output(
    y: torch.Tensor, target: torch.Tensor, out_act: str, dtype: torch.dtype, *, backend: str = "auto"
) -> torch.Tensor:
    """:func:`l1_sign_grad_from_output_ref` in one pass (CPU): ``y``, ``target`` float32 of one
    shape; a new tensor of ``dtype`` (float32/bfloat16). Bit-identical to the reference (no
    transcendental: ``1 - y*y`` is one FMA, as in ATen's vectorised kernel). ``auto`` takes the
    compiled kernel on the CPU: one vectorised pass instead of ATen's four (sub, sign,
    tanh_backward, cast; see ``benchmarks/results/cpu_kernel_choices.md``)."""
    if target.shape != y.shape or target.dtype != torch.float32 or y.dtype != torch.float32:
        raise ValueError(
            f"y and target must be float32 of one shape, got {y.dtype} {tuple(y.shape)}, "
            f"{target.dtype} {tuple(target.shape)}"
        )
    if backend == "torch":
        return l1_sign_grad_from_output_ref(y, target, out_act, dtype)
    g = torch.empty(y.shape, dtype=dtype, device=y.device)
    reason = _compiled_reason([y, target, g], "compiled" if backend == "auto" else backend)
    if reason is None and y.device.type != "cpu":
        reason = "this kernel is CPU-only (the CUDA loops fuse it into l1_sign_out_grad)"
    if reason is not None:
        if backend == "compiled":
            raise BackendUnavailableError(f"compiled l1_sign_grad_from_output cannot run: {reason}")
        return l1_sign_grad_from_output_ref(y, target, out_act, dtype)
    _ext.load().l1_sign_grad_from_output_cpu(
        y.data_ptr(), target.data_ptr(), g.data_ptr(), DTYPE_CODES[dtype], y.numel(), OUT_ACT_CODES[out_act]
    )
    return g


def l1_sign_out_grad_ref(a: torch.Tensor, target: torch.Tensor, out_act: str, dtype: torch.dtype) -> torch.Tensor:
    """The gradient of ``sum |out_act(a) - target|`` with respect to the pre-activation ``a``:
    ``sign(y - target) * out_act'(y)`` with ``y = out_act(a)`` in float32, returned in ``dtype``."""
    return l1_out_grad_from_output(out_activation_ref(a, out_act), target, out_act).to(dtype)


def act_backward_ref(g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> torch.Tensor:
    """``g * act'(a)`` (the catalogue's :func:`~advface_fast.models.activations.hidden_activation_backward`:
    ATen's own backward kernels, what autograd runs), in ``g``'s dtype."""
    return hidden_activation_backward(g, a, act, slope)


def _compiled_reason(tensors: list[torch.Tensor], backend: str) -> str | None:
    """Why the compiled epilogue kernel cannot (or, under auto, should not) run these tensors, or None."""
    if backend not in ("auto", "torch", "compiled"):
        raise ValueError(f"backend={backend!r} is not one of 'auto', 'torch', 'compiled'")
    ext = _ext.load()
    device = tensors[0].device
    if ext is None:
        return _ext.load_error()
    if any(t.device != device for t in tensors):
        return "the tensors are on different devices"
    if any(t.dtype not in DTYPE_CODES for t in tensors):
        return "the kernels take float32 and bfloat16"
    if any(not t.is_contiguous() for t in tensors):
        return "the kernels take contiguous tensors"
    if device.type == "cuda":
        return None if ext.build_info().get("cuda") else "the CUDA kernels are not built"
    if device.type != "cpu":
        return f"no compiled kernel for device {device}"
    if backend == "auto":
        return "on the CPU torch's vectorised transcendentals are faster (see the module doc)"
    return None


def _use_compiled(tensors: list[torch.Tensor], backend: str, name: str) -> bool:
    reason = _compiled_reason(tensors, backend) if backend != "torch" else "torch asked for"
    if reason is not None and backend == "compiled":
        raise BackendUnavailableError(f"compiled {name} cannot run: {reason}")
    return reason is None


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def out_activation(a: torch.Tensor, out_act: str, *, backend: str = "auto") -> torch.Tensor:
    """``out_act(a)`` as a new float32 tensor (``a``: float32/bfloat16, any shape)."""
    if not _use_compiled([a], backend, "out_activation"):
        return out_activation_ref(a, out_act)
    ext, y = _ext.load(), torch.empty(a.shape, dtype=torch.float32, device=a.device)
    args = (a.data_ptr(), DTYPE_CODES[a.dtype], y.data_ptr(), a.numel(), OUT_ACT_CODES[out_act])
    if a.device.type == "cpu":
        ext.out_activation_cpu(*args)
    else:
        with torch.cuda.device(a.device):
            ext.out_activation_cuda(*args, _stream(a))
    return y


def l1_sign_out_grad(
    a: torch.Tensor, target: torch.Tensor, out_act: str, dtype: torch.dtype, *, backend: str = "auto"
) -> torch.Tensor:
    """:func:`l1_sign_out_grad_ref` in one pass: ``a`` float32/bfloat16 pre-activations, ``target``
    float32 of ``a``'s shape; returns a new tensor of ``dtype`` (float32/bfloat16)."""
    if target.shape != a.shape or target.dtype != torch.float32:
        raise ValueError(f"target must be float32 of shape {tuple(a.shape)}, got {target.dtype} {tuple(target.shape)}")
    g = torch.empty(a.shape, dtype=dtype, device=a.device)
    if not _use_compiled([a, target, g], backend, "l1_sign_out_grad"):
        return l1_sign_out_grad_ref(a, target, out_act, dtype)
    ext = _ext.load()
    args = (a.data_ptr(), DTYPE_CODES[a.dtype], target.data_ptr(), g.data_ptr(), DTYPE_CODES[dtype], a.numel())
    if a.device.type == "cpu":
        ext.l1_sign_out_grad_cpu(*args, OUT_ACT_CODES[out_act])
    else:
        with torch.cuda.device(a.device):
            ext.l1_sign_out_grad_cuda(*args, OUT_ACT_CODES[out_act], _stream(a))
    return g


def act_backward_(g: torch.Tensor, a: torch.Tensor, act: str, slope: float, *, backend: str = "auto") -> torch.Tensor:
    """In place on ``g``: ``g = g * act'(a)`` (:func:`act_backward_ref`); returns ``g``."""
    if g.shape != a.shape:
        raise ValueError(f"g and a must have one shape, got {tuple(g.shape)} and {tuple(a.shape)}")
    if not _use_compiled([g, a], backend, "act_backward_"):
        return g.copy_(act_backward_ref(g, a, act, slope))
    ext = _ext.load()
    args = (g.data_ptr(), DTYPE_CODES[g.dtype], a.data_ptr(), DTYPE_CODES[a.dtype], g.numel(), ACT_CODES[act])
    if g.device.type == "cpu":
        ext.act_backward_cpu(*args, float(slope))
    else:
        with torch.cuda.device(g.device):
            ext.act_backward_cuda(*args, float(slope), _stream(g))
    return g


# ---- bf16 GEMM on AMX tiles (csrc/amx_gemm_cpu.cpp) -------------------------------------------


@functools.cache
def amx_unavailable_reason() -> str | None:
    """``None`` when :func:`amx_linear` can run here (the extension built, and a CPU and OS with
    AMX-BF16 tiles), else why not. Fixed for the process (asked by every :func:`amx_linear` call)."""
    ext = _ext.load()
    if ext is None:
        return _ext.load_error()
    if not hasattr(ext, "amx_available"):
        return "the compiled extension predates the AMX kernel (rebuild it)"
    if not ext.amx_available():
        return "this CPU (or OS, or build) offers no AMX-BF16 tiles"
    return None


def amx_pack(b: torch.Tensor) -> torch.Tensor:
    """``b`` ``(K, N)`` bfloat16, K and N multiples of 32, in the layout :func:`amx_linear` reads:
    one contiguous 1 KiB tile per (32 rows of K, 16 columns of N), column blocks outermost, each
    tile 16 row pairs x 16 columns x 2 (``(N/16, K/32, 16, 16, 2)``)."""
    k, n = b.shape
    if b.dtype != torch.bfloat16 or k % 32 or n % 32:
        raise ValueError(f"amx_pack takes a bfloat16 (K, N) with K and N multiples of 32, got {b.dtype} {(k, n)}")
    return b.reshape(k // 32, 16, 2, n // 16, 16).permute(3, 0, 1, 4, 2).contiguous()


def amx_linear_ref(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, out_dtype: torch.dtype) -> torch.Tensor:
    """``a @ b + bias`` with ``a`` ``(M, K)`` and ``b`` ``(K, N)`` bfloat16, products and sums in
    float32 (exact products of bf16 values), then cast to ``out_dtype`` (round to nearest even)."""
    out = a.float() @ b.float()
    if bias is not None:
        out += bias.float()
    return out.to(out_dtype)


def amx_linear(
    a: torch.Tensor, b_packed: torch.Tensor, n: int, bias: torch.Tensor | None, out_dtype: torch.dtype
) -> torch.Tensor:
    """:func:`amx_linear_ref` on AMX tiles: ``a`` ``(M, K)`` bfloat16 contiguous, ``b_packed`` from
    :func:`amx_pack` of a ``(K, n)`` matrix, ``bias`` float32 ``(n,)`` or None; K and n multiples of
    32, any M; a new ``(M, n)`` tensor of ``out_dtype`` (float32 or bfloat16). The sums run in another order
    than the reference's, so results agree to float32 rounding of the sums (exactly where they are
    exact, e.g. small integers). Raises BackendUnavailableError where AMX cannot run."""
    reason = amx_unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"amx_linear cannot run: {reason}")
    m, k = a.shape
    if a.dtype != torch.bfloat16 or not a.is_contiguous() or a.device.type != "cpu":
        raise ValueError(f"a must be a contiguous bfloat16 CPU tensor, got {a.dtype} on {a.device}")
    if b_packed.dtype != torch.bfloat16 or b_packed.numel() != k * n or not b_packed.is_contiguous():
        raise ValueError(f"b_packed must be amx_pack of a ({k}, {n}) bfloat16 matrix, got {tuple(b_packed.shape)}")
    if bias is not None and (bias.dtype != torch.float32 or bias.shape != (n,) or not bias.is_contiguous()):
        raise ValueError(f"bias must be a contiguous float32 ({n},), got {bias.dtype} {tuple(bias.shape)}")
    if out_dtype not in DTYPE_CODES:
        raise ValueError(f"out_dtype must be float32 or bfloat16, got {out_dtype}")
    out = torch.empty((m, n), dtype=out_dtype)
    bias_ptr = bias.data_ptr() if bias is not None else 0
    _ext.load().amx_linear_cpu(
        a.data_ptr(), m, k, b_packed.data_ptr(), n, bias_ptr, out.data_ptr(), DTYPE_CODES[out_dtype]
    )
    return out
