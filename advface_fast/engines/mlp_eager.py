"""Engine ``"mlp-eager"`` (old name ``"mlp"``, kept as an alias): the protection loop for
:class:`~advface_fast.models.decoders.MLPDecoder` in PyTorch ops with the backward pass written out, on
any device; ``auto``'s choice off CUDA.

Same arithmetic as autograd through the reference (:func:`~advface_fast.engines.reference.pgd_ref`): the
forward is ``addmm`` per layer, the backward ``g @ W`` per layer with ATen's own activation
backward kernels (``leaky_relu_backward``, ``gelu_backward``, ``tanh_backward``, ...), and the L1
sign is ``sign(y - x~)``, so in fp32 with plain weights it returns the reference's bytes. What it
saves: the autograd graph per step (and every saved tensor the input gradient never needs) and,
in bf16, the casts: ``torch.autocast`` converts every weight to bf16 on every call, here they are
converted once per decoder and kept in the plan cache (:mod:`advface_fast.engines.plan_cache`).

bf16 means bf16 GEMM operands and outputs with fp32 accumulation (oneDNN/cuBLAS), the output
activation, the L1 sign, the projection and ``z`` in fp32. On the CPU the weights are packed for
oneDNN once (``ADVFACE_CPU_PACKED``), and on CPUs with AMX tiles small bf16 GEMMs run on our own
tile kernel (``ops.amx_linear``, ``ADVFACE_CPU_AMX``; layers whose sizes are multiples of 32), the
same arithmetic in another summation order. The size thresholds below were set from
measurements recorded in ``benchmarks/results/cpu_kernel_choices.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.activations import hidden_activation, output_activation_
from ..models.decoders import MLPDecoder
from . import overrides
from .ops import (
    act_backward_ref,
    amx_linear,
    amx_pack,
    amx_unavailable_reason,
    clipped_sign_step,
    l1_sign_grad_from_output,
)
from .plan_cache import PlanCache
from .registry import Engine, mlp_decoder_only, register
from .torch_reference import torch_precision

# bf16 GEMMs of at most this many rows and multiply-adds take the AMX kernel on the CPU; below 16
# rows, only layers of at most AMX_MAX_GEMV_WEIGHTS weights (there oneDNN runs a matrix-vector
# product bound by reading the weights, as the tiles are, and AMX pays only while oneDNN's fixed
# cost per call dominates)
AMX_MAX_ROWS = 128
AMX_MAX_MACS = 1 << 25
AMX_MAX_GEMV_WEIGHTS = 1 << 18


@dataclass(frozen=True)
class MLPWeights:
    """An MLPDecoder's layers in the GEMM dtype on one device (``weights[i]`` is ``(out, in)``),
    with ``packed`` oneDNN copies ``(W_i, W_i^T)`` of the layers the CPU path packs (else None)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    act: str
    out_act: str
    slope: float
    out_shape: tuple[int, int, int]
    packed: tuple[tuple[torch.Tensor, torch.Tensor] | None, ...] | None = None
    # AMX tile copies (ops.amx_pack) of (W_i^T, W_i) and the fp32 bias per layer, bf16 on AMX CPUs
    amx: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, ...] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.weights[0].dtype

    def _amx(self, i: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if self.amx is None or self.amx[i] is None:
            return None
        m = -(-rows.shape[0] // 32) * 32  # the kernel's rows, a partial block padded
        size = self.weights[i].numel()
        if m > AMX_MAX_ROWS or m * size > AMX_MAX_MACS or (rows.shape[0] < 16 and size > AMX_MAX_GEMV_WEIGHTS):
            return None
        return self.amx[i]

    def linear(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s pre-activation ``h @ W_i^T + b_i``."""
        amx = self._amx(i, h)
        if amx is not None:
            return amx_linear(h.contiguous(), amx[0], self.weights[i].shape[0], amx[2], torch.bfloat16)
        if self.packed is not None and self.packed[i] is not None:
            return torch.ops.mkldnn._linear_pointwise(h, self.packed[i][0], self.biases[i], "none", [], "")
        return torch.addmm(self.biases[i], h, self.weights[i].t())

    def linear_t(self, i: int, g: torch.Tensor) -> torch.Tensor:
        """The input gradient through layer ``i``: ``g @ W_i``."""
        amx = self._amx(i, g)
        if amx is not None:
            return amx_linear(g.contiguous(), amx[1], self.weights[i].shape[1], None, torch.bfloat16)
        if self.packed is not None and self.packed[i] is not None:
            return torch.ops.mkldnn._linear_pointwise(g, self.packed[i][1], None, "none", [], "")
        return g @ self.weights[i]


PLANS: PlanCache[MLPWeights] = PlanCache()
GEMM_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def _worth_packing(weight: torch.Tensor, batch: int) -> bool:
    """bf16 gains from packing at every size; fp32 only on large layers at batch >= 32 (on small
    ones or single rows plain addmm is faster)."""
    if weight.dtype == torch.bfloat16:
        return True
    return batch >= 32 and weight.numel() >= 1 << 20


def _pack(weights: tuple[torch.Tensor, ...], batch: int) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, ...] | None:
    """oneDNN-packed ``(W, W^T)`` for the layers worth it, or None where oneDNN's linear is
    missing or fails.

    Why: oneDNN re-lays-out a plain weight on every matmul call (into AMX/AVX-512 blocks); packing
    once saves that. These are the private ops Inductor's CPU freezing pass emits; a failed probe
    keeps the plain ``addmm`` path.
    """
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return None
    try:
        packed = tuple(
            (
                torch.ops.mkldnn._reorder_linear_weight(w, batch),
                torch.ops.mkldnn._reorder_linear_weight(w.t().contiguous(), batch),
            )
            if _worth_packing(w, batch)
            else None
            for w in weights
        )
        probe = torch.ones(2, 4, dtype=weights[0].dtype)
        torch.ops.mkldnn._linear_pointwise(
            probe, torch.ops.mkldnn._reorder_linear_weight(torch.ones(3, 4, dtype=probe.dtype), 2), None, "none", [], ""
        )
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
    return packed if any(p is not None for p in packed) else None


def _amx_pack(
    weights: tuple[torch.Tensor, ...], biases: tuple[torch.Tensor, ...]
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, ...] | None:
    """Per layer whose sizes are multiples of 32: (W^T and W in AMX tiles, the bias in fp32); None
    when this machine has no AMX (or no layer qualifies)."""
    if amx_unavailable_reason() is not None:
        return None
    packs = tuple(
        (amx_pack(w.t().contiguous()), amx_pack(w), b.float().contiguous())
        if w.shape[0] % 32 == 0 and w.shape[1] % 32 == 0
        else None
        for w, b in zip(weights, biases, strict=True)
    )
    return packs if any(p is not None for p in packs) else None


def mlp_weights(decoder: MLPDecoder, device: torch.device, precision: str, batch: int = 256) -> MLPWeights:
    """The decoder's weights for ``precision`` on ``device``, converted (and on the CPU packed for
    oneDNN, see :func:`_pack`; ``batch`` is the packing's size hint) once and kept until a
    parameter changes (:data:`PLANS`)."""
    dtype = GEMM_DTYPE[precision]
    packed = device.type == "cpu" and overrides.cpu_packed()
    amx = device.type == "cpu" and dtype == torch.bfloat16 and overrides.cpu_amx()

    def build() -> MLPWeights:
        with torch.no_grad():
            weights = tuple(lay.weight.detach().to(device=device, dtype=dtype).contiguous() for lay in decoder.layers)
            biases = tuple(lay.bias.detach().to(device=device, dtype=dtype).contiguous() for lay in decoder.layers)
            return MLPWeights(
                weights,
                biases,
                decoder.act,
                decoder.out_act,
                decoder.negative_slope,
                decoder.out_shape,
                _pack(weights, batch) if packed else None,
                _amx_pack(weights, biases) if amx else None,
            )

    return PLANS.get(decoder, (str(device), dtype, packed, amx), build)


def _forward(w: MLPWeights, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``(pre-activations of the hidden layers, output image (B, P) in fp32 after out_act)``."""
    h = z.to(w.dtype)
    pre = []
    for i in range(len(w.weights) - 1):
        a = w.linear(i, h)
        pre.append(a)
        h = hidden_activation(a, w.act, w.slope)
    return pre, output_activation_(w.linear(len(w.weights) - 1, h).float(), w.out_act)


def _input_grad(w: MLPWeights, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``d/dz sum ||S(z) - target||_1`` per row, ``(B, D)`` fp32 (target ``(B, P)`` fp32)."""
    pre, y = _forward(w, z)
    g = l1_sign_grad_from_output(y, target, w.out_act, w.dtype)  # one compiled pass on the CPU, same bytes
    for i in range(len(w.weights) - 1, 0, -1):
        g = act_backward_ref(w.linear_t(i, g), pre[i - 1], w.act, w.slope)
    return w.linear_t(0, g).float()


@torch.no_grad()
def mlp_pgd(
    decoder: MLPDecoder,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    precision: str = "fp32",
) -> torch.Tensor:
    """:func:`~advface_fast.engines.reference.pgd_ref` for an MLPDecoder, backward written out; ``z`` and
    the step in fp32 whatever ``precision`` (tf32: tf32 matmuls, CUDA). Shapes as in ``pgd_ref``;
    returns ``z0``'s dtype."""
    w = mlp_weights(decoder, z0.device, precision, batch=z0.shape[0])
    tgt = target.reshape(target.shape[0], -1).float()
    z = z0.float().contiguous().clone()
    c = centre.float().contiguous()
    with _matmul_precision(z0.device, precision):
        for _ in range(steps):
            clipped_sign_step(z, _input_grad(w, z, tgt), c, eps, alpha)  # in place; compiled when built
    return z.to(z0.dtype)


@torch.no_grad()
def mlp_decode(decoder: MLPDecoder, z: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``S(z)`` ``(B, C, H, W)`` with the loop's forward arithmetic (so the L1 signs are exact
    zeros at ``z`` itself), in ``z``'s dtype."""
    w = mlp_weights(decoder, z.device, precision, batch=z.shape[0])
    with _matmul_precision(z.device, precision):
        return _forward(w, z)[1].reshape(z.shape[0], *w.out_shape).to(z.dtype)


def _matmul_precision(device: torch.device, precision: str):
    """tf32 matmuls for ``precision="tf32"``; nothing else (bf16 is in the cached weights' dtype)."""
    return torch_precision(device, "tf32" if precision == "tf32" else "fp32")


MLP_EAGER = register(
    Engine(
        "mlp-eager",
        "MLPDecoder, backward written out in torch ops, weights converted once; any device (CPU: oneDNN/AMX)",
        mlp_pgd,
        mlp_decode,
        checks=(mlp_decoder_only("the mlp-eager engine"),),
        aliases=("mlp",),
    )
)
