"""The CUDA backend's loop driven from Python, for installs whose ``advface_fast._C`` has no CUDA
loop (no nvcc or no cublasLt.h at build time): torch's cuBLAS GEMMs into preallocated buffers and
the package's own elementwise kernels (``csrc/cuda_kernels.cuh`` compiled by NVRTC,
:mod:`advface_fast.engines.nvrtc_kernels`), the ``steps`` of a batch captured in one CUDA graph
(:mod:`advface_fast.engines.cuda_graphs`) from the second call with the same settings on.

:class:`PyPgdLoop` has the interface of the extension's ``PgdLoop`` (``run``, ``decode``,
``captured``) over the same buffers (``cuda_loop.build_plan``), and the same step:

    forward   h_0 = z (bf16: to_bf16(z));  pre_i = h_i W_i^T + b_i;  h_{i+1} = act(pre_i)
    sign      g = sign(out_act(pre_L) - target) * out_act'(...)            (l1_sign_out_grad)
    backward  g = (g W_i) * act'(pre_{i-1}) for i = L-1 .. 1;  grad_z = g W_0   (act_backward)
    step      z = clamp(z + alpha sign(grad_z), centre - eps, centre + eps)   (clipped_sign_step)

The kernels are an argument: :class:`TorchKernels` runs the same step with the ``*_ref`` torch ops
on any device, which is how the CPU test suite checks this driver's wiring against the reference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import torch

from ..models.activations import hidden_activation
from .cuda_graphs import GraphRunner
from .ops import act_backward_ref, clipped_sign_step_ref, l1_sign_out_grad_ref, out_activation_ref


class ElementwiseKernels(Protocol):
    """The non-GEMM parts of a step, writing into given contiguous tensors."""

    def to_bf16(self, x: torch.Tensor, out: torch.Tensor) -> None: ...
    def act_forward(self, a: torch.Tensor, out: torch.Tensor, act: str, slope: float) -> None: ...
    def l1_sign_out_grad(self, a: torch.Tensor, target: torch.Tensor, g: torch.Tensor, out_act: str) -> None: ...
    def act_backward(self, g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> None: ...
    def out_activation(self, a: torch.Tensor, y: torch.Tensor, out_act: str) -> None: ...
    def clipped_sign_step(
        self, z: torch.Tensor, g: torch.Tensor, c: torch.Tensor, eps: float, alpha: float
    ) -> None: ...


class TorchKernels:
    """:class:`ElementwiseKernels` by the torch reference ops (:mod:`advface_fast.engines.ops`' ``*_ref``)."""

    def to_bf16(self, x: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(x)

    def act_forward(self, a: torch.Tensor, out: torch.Tensor, act: str, slope: float) -> None:
        out.copy_(hidden_activation(a, act, slope))

    def l1_sign_out_grad(self, a: torch.Tensor, target: torch.Tensor, g: torch.Tensor, out_act: str) -> None:
        g.copy_(l1_sign_out_grad_ref(a, target, out_act, g.dtype))

    def act_backward(self, g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> None:
        g.copy_(act_backward_ref(g, a, act, slope))

    def out_activation(self, a: torch.Tensor, y: torch.Tensor, out_act: str) -> None:
        y.copy_(out_activation_ref(a, out_act))

    def clipped_sign_step(self, z: torch.Tensor, g: torch.Tensor, c: torch.Tensor, eps: float, alpha: float) -> None:
        z.copy_(clipped_sign_step_ref(z, g, c, eps, alpha))


class PyPgdLoop:
    """The protection loop over the buffers of ``cuda_loop.build_plan`` (``tensors``: weights,
    biases, pre, hidden, grad_hidden, z, centre, target, z_in, grad_out, grad_z, image; layout in
    ``csrc/pgd_loop.h``). ``precision``: ``"fp32"``, ``"tf32"`` or ``"bf16"`` (the buffers' GEMM
    dtype must match). ``kernels``: the elementwise kernels (default: NVRTC's on the GPU)."""

    def __init__(
        self,
        tensors: dict[str, Any],
        precision: str,
        act: str,
        out_act: str,
        slope: float,
        kernels: ElementwiseKernels | None = None,
    ) -> None:
        self.t = tensors
        self.precision = precision
        self.act, self.out_act, self.slope = act, out_act, float(slope)
        self.device = tensors["z"].device
        if kernels is None:
            from .nvrtc_kernels import NvrtcKernels

            kernels = NvrtcKernels(self.device)
        self.k = kernels
        self.bf16 = tensors["weights"][0].dtype == torch.bfloat16
        if self.bf16 != (precision == "bf16"):
            raise ValueError(f"precision {precision!r} does not match the weights' dtype {tensors['weights'][0].dtype}")
        # the last backward GEMM's output in the GEMM dtype before the fp32 grad_z (a bf16 GEMM
        # cannot write fp32 through torch.mm; rounding keeps every sign, which is all the step reads)
        self._grad_z_gemm = torch.empty_like(tensors["z_in"]) if self.bf16 else tensors["grad_z"]
        self.graphs = GraphRunner(self.device, self.device.type == "cuda", "NVRTC loop")

    @contextlib.contextmanager
    def _matmul_precision(self) -> Iterator[None]:
        if self.device.type != "cuda":
            yield
            return
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.precision == "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev

    def _forward(self) -> None:
        t = self.t
        if self.bf16:
            self.k.to_bf16(t["z"], t["z_in"])
        h = t["z_in"] if self.bf16 else t["z"]
        last = len(t["weights"]) - 1
        for i, (w, b) in enumerate(zip(t["weights"], t["biases"], strict=True)):
            torch.addmm(b, h, w.t(), out=t["pre"][i])
            if i < last:
                self.k.act_forward(t["pre"][i], t["hidden"][i], self.act, self.slope)
                h = t["hidden"][i]

    def _step(self, eps: float, alpha: float) -> None:
        t = self.t
        self._forward()
        w = t["weights"]
        self.k.l1_sign_out_grad(t["pre"][-1], t["target"], t["grad_out"], self.out_act)
        g = t["grad_out"]
        for i in range(len(w) - 1, 0, -1):
            torch.mm(g, w[i], out=t["grad_hidden"][i - 1])
            g = t["grad_hidden"][i - 1]
            self.k.act_backward(g, t["pre"][i - 1], self.act, self.slope)
        torch.mm(g, w[0], out=self._grad_z_gemm)
        if self.bf16:
            t["grad_z"].copy_(self._grad_z_gemm)
        self.k.clipped_sign_step(t["z"], t["grad_z"], t["centre"], eps, alpha)

    @property
    def captured(self) -> bool:
        """Whether a CUDA graph of the loop exists (as the extension's ``PgdLoop.captured``)."""
        return self.graphs.captured

    @property
    def graph_error(self) -> str | None:
        """Why a CUDA graph capture failed (the loop then runs eagerly), or None."""
        return self.graphs.graph_error

    def run(self, steps: int, eps: float, alpha: float, stream: int | None = None) -> None:
        """``steps`` projected sign steps on ``tensors["z"]`` in place, on torch's current stream
        (``stream`` is accepted for the extension's signature; torch's current stream is the one
        it would be). On CUDA devices the steps are captured in one CUDA graph and replayed
        (:class:`~advface_fast.engines.cuda_graphs.GraphRunner`: eager for the first call with a
        (steps, eps, alpha), captured on the second)."""

        def body() -> None:
            for _ in range(steps):
                self._step(eps, alpha)

        with torch.no_grad(), self._matmul_precision():
            self.graphs.run((int(steps), float(eps), float(alpha)), body)

    def decode(self, stream: int | None = None) -> None:
        """``tensors["image"] = out_act(forward(z))`` with the loop's forward arithmetic."""
        with torch.no_grad(), self._matmul_precision():
            self._forward()
            self.k.out_activation(self.t["pre"][-1], self.t["image"], self.out_act)
