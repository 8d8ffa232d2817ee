"""The whole AdvFace loop for an MLP decoder on the fused Triton kernels of :mod:`.mlp_gemm`.

Per step, for a layer stack ``W_1 .. W_L`` (2L kernels, no weight gradient, no image in memory):

    h_l   = act(h_{l-1} W_l^T + b_l)                      l = 1 .. L-1   (linear_act)
    s     = sign(out_act(h_{L-1} W_L^T + b_L) - x~) * out_act'            (last_layer_l1_sign)
    d_l   = (d_{l+1} W_{l+1}) * act'(h_l)                 l = L-1 .. 1   (linear_act_backward, d_L = s)
    z'    = clamp(z + alpha sign(d_1 W_1), c - eps, c + eps)              (input_grad_sign_step)

On a GPU, the ``steps`` iterations of a batch shape are captured once in a CUDA graph and
replayed (at small batches a step is ~2L launches of a few microseconds of work each, so Python
launch overhead would dominate without it); the first batch of each shape runs eagerly, which
also autotunes the block sizes before the capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from advface_fast.kernels import mlp_gemm_tma
from advface_fast.kernels._common import is_interpreting
from advface_fast.kernels.mlp_gemm import (
    input_grad_sign_step,
    last_layer_l1_sign,
    linear_act,
    linear_act_backward,
    linear_out,
)
from torch import nn

from advface_fast.engines.cuda_graphs import GraphRunner
from advface_fast.engines.plan_cache import PlanCache
from advface_fast.settings import PRECISIONS


@dataclass
class _Workspace:
    z: list[torch.Tensor]
    centre: torch.Tensor
    target: torch.Tensor
    h: list[torch.Tensor]
    pre: list[torch.Tensor | None]
    d: list[torch.Tensor]
    s: torch.Tensor


@dataclass
class MLPPlan:
    """Weights of an ``MLPDecoder`` laid out for the kernels, plus cached workspaces per batch shape."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    act: str
    out_act: str
    slope: float
    precision: str
    device: torch.device
    use_graphs: bool
    target_bf16: bool
    workspaces: dict[int, _Workspace] = field(default_factory=dict)
    graphs: GraphRunner | None = None  # the loop's CUDA graph (advface_fast.engines.cuda_graphs), one batch shape

    def __post_init__(self) -> None:
        self.graphs = GraphRunner(self.device, self.use_graphs, "Triton loop")

    @property
    def act_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @property
    def graph_error(self) -> str | None:
        """Why a CUDA graph capture failed (the plan then runs eagerly), or None."""
        return self.graphs.graph_error


PLANS: PlanCache[MLPPlan] = PlanCache()


def plan_for(
    decoder: nn.Module,
    device: torch.device,
    precision: str,
    use_graphs: bool | None = None,
    target_bf16: bool | None = None,
) -> MLPPlan:
    """The (cached) plan for ``decoder`` on ``device``; rebuilt when a parameter is
    replaced or changed in place (:func:`advface_fast.engines.plan_cache.params_key`).

    ``use_graphs`` defaults to True on CUDA; ``target_bf16`` (store the L1 target image in bf16:
    half the epilogue's memory traffic) defaults to True for ``precision="bf16"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    target_bf16 = precision == "bf16" if target_bf16 is None else target_bf16
    # no graphs under the interpreter: its "launches" are host code that copies tensors
    graphs = (device.type == "cuda" and not is_interpreting()) if use_graphs is None else use_graphs

    def build() -> MLPPlan:
        wdtype = torch.bfloat16 if precision == "bf16" else torch.float32
        layers = list(decoder.layers)
        return MLPPlan(
            weights=[lin.weight.detach().to(device, wdtype).contiguous() for lin in layers],
            biases=[lin.bias.detach().to(device, torch.float32).contiguous() for lin in layers],
            act=decoder.act, out_act=decoder.out_act, slope=decoder.negative_slope, precision=precision,
            device=device, use_graphs=graphs, target_bf16=target_bf16,
        )  # fmt: skip

    return PLANS.get(decoder, (str(device), precision, target_bf16, graphs), build)


def _workspace(plan: MLPPlan, batch: int) -> _Workspace:
    ws = plan.workspaces.get(batch)
    if ws is None:
        target_dtype = torch.bfloat16 if plan.target_bf16 else torch.float32
        dev, adt = plan.device, plan.act_dtype
        dim = plan.weights[0].shape[1]
        hidden = [w.shape[0] for w in plan.weights[:-1]]
        pixels = plan.weights[-1].shape[0]
        ws = _Workspace(
            z=[torch.empty(batch, dim, device=dev) for _ in range(2)],
            centre=torch.empty(batch, dim, device=dev),
            target=torch.empty(batch, pixels, device=dev, dtype=target_dtype),
            h=[torch.empty(batch, n, device=dev, dtype=adt) for n in hidden],
            pre=[torch.empty(batch, n, device=dev, dtype=adt) if plan.act == "gelu" else None for n in hidden],
            d=[torch.empty(batch, n, device=dev, dtype=adt) for n in hidden],
            s=torch.empty(batch, pixels, device=dev, dtype=adt),
        )
        plan.workspaces = {batch: ws}  # keep one shape: a gallery has at most a full and a last batch
        plan.graphs.reset()  # a graph replays the old workspace's addresses
    return ws


def _forward_hidden(plan: MLPPlan, ws: _Workspace, x: torch.Tensor) -> torch.Tensor:
    """The hidden layers from input ``x`` into ``ws.h`` (and ``ws.pre`` for gelu); returns the last
    hidden activation (``x`` itself for an affine decoder)."""
    for i in range(len(plan.weights) - 1):
        linear_act(
            x,
            plan.weights[i],
            plan.biases[i],
            ws.h[i],
            ws.pre[i],
            act=plan.act,
            slope=plan.slope,
            precision=plan.precision,
        )
        x = ws.h[i]
    return x


def _step(plan: MLPPlan, ws: _Workspace, cur: int, eps: float, alpha: float) -> None:
    """One PGD step from ``ws.z[cur]`` into ``ws.z[1 - cur]``."""
    p, n_hidden = plan.precision, len(plan.weights) - 1
    x = _forward_hidden(plan, ws, ws.z[cur])
    last_layer_l1_sign(x, plan.weights[-1], plan.biases[-1], ws.target, ws.s, out_act=plan.out_act, precision=p)
    d = ws.s
    for i in range(n_hidden - 1, -1, -1):
        saved = ws.pre[i] if plan.act == "gelu" else ws.h[i]
        linear_act_backward(d, plan.weights[i + 1], saved, ws.d[i], act=plan.act, slope=plan.slope, precision=p)
        d = ws.d[i]
    input_grad_sign_step(d, plan.weights[0], ws.z[cur], ws.centre, ws.z[1 - cur], eps=eps, alpha=alpha, precision=p)


def _run_steps(plan: MLPPlan, ws: _Workspace, steps: int, eps: float, alpha: float) -> None:
    for t in range(steps):
        _step(plan, ws, t % 2, eps, alpha)


def pgd_mlp(
    plan: MLPPlan,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """:func:`advface_fast.engines.reference.pgd_ref` on the fused kernels. ``z0``, ``centre`` ``(B, D)``;
    ``target`` ``(B, *out_shape)``. Returns a new float32 ``(B, D)``."""
    if steps == 0:
        return z0.float().clone()
    batch = z0.shape[0]
    ws = _workspace(plan, batch)
    ws.z[0].copy_(z0)
    ws.centre.copy_(centre)
    ws.target.copy_(target.reshape(batch, -1))
    # the GEMM kernel selection is part of the key: a graph captured with the TMA kernel must not
    # be replayed when the pointer kernel is asked for (mlp_gemm_tma.forced / ADVFACE_TRITON_GEMM)
    key = (batch, steps, float(eps), float(alpha), mlp_gemm_tma.mode())
    plan.graphs.run(key, lambda: _run_steps(plan, ws, steps, eps, alpha))
    return ws.z[steps % 2].clone()


def decode_mlp(plan: MLPPlan, z: torch.Tensor) -> torch.Tensor:
    """The decoder's forward ``S(z)`` ``(B, P)`` float32 on the same kernels (and block configs) as
    the loop, so that the loop's forward at ``z`` reproduces it bit for bit."""
    batch = z.shape[0]
    ws = _workspace(plan, batch)
    ws.z[0].copy_(z)
    x = _forward_hidden(plan, ws, ws.z[0])
    out = torch.empty(batch, plan.weights[-1].shape[0], device=plan.device)
    return linear_out(x, plan.weights[-1], plan.biases[-1], out, out_act=plan.out_act, precision=plan.precision)
