"""The PyTorch reference of every step of the protection loop: the source of truth.

Each function here is the oracle the fused Triton and CUDA kernels are tested against, and each
fast kernel has the same signature as its ``*_ref`` twin. Plain, readable, faithful to the
equations of the README's "The method, exactly":

    g_t     = d/dz || S(z) - x~ ||_1  at z = z_t          (per row; = J_S(z_t)^T sign(S(z_t) - x~))
    z_{t+1} = clamp(z_t + alpha * sign(g_t), c - eps, c + eps)

with ``sign(0) = 0`` as in torch (``|.|`` has sub-gradient 0 at 0 in autograd).
"""

from __future__ import annotations

import torch
from torch import nn


def clipped_sign_step_ref(
    z: torch.Tensor, g: torch.Tensor, centre: torch.Tensor, eps: float, alpha: float
) -> torch.Tensor:
    """One projected sign step: ``clamp(z + alpha * sign(g), centre - eps, centre + eps)``.

    All tensors ``(B, D)`` of one float dtype; returns a new ``(B, D)`` tensor.
    """
    return torch.clamp(z + alpha * torch.sign(g), centre - eps, centre + eps)


def l1_input_grad_ref(decoder: nn.Module, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``d/dz sum_rows ||decoder(z) - target||_1``, i.e. each row's gradient of its own L1 loss.

    ``z`` ``(B, D)``, ``target`` of the decoder's output shape ``(B, ...)``. Only the input
    gradient is computed: the decoder's parameters must not require grad (the engine freezes a
    private copy), so no weight gradient is ever formed.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        loss = (decoder(z) - target).abs().sum()
        (g,) = torch.autograd.grad(loss, z)
    return g


def pgd_ref(
    decoder: nn.Module,
    z0: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
) -> torch.Tensor:
    """``steps`` sign-gradient ascent steps on the L1 loss from ``z0``, projected onto the L-inf
    ball of radius ``eps`` around ``centre``. Shapes: ``z0``, ``centre`` ``(B, D)``; ``target``
    ``(B, *out_shape)``. Returns ``z_T`` ``(B, D)`` in ``z0``'s dtype."""
    z = z0.detach().clone()
    for _ in range(steps):
        g = l1_input_grad_ref(decoder, z, target)
        z = clipped_sign_step_ref(z, g, centre, eps, alpha)
    return z


def renorm_ref(z: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Rescale each row of ``z`` ``(B, D)`` to the L2 norm in ``norms`` ``(B,)`` (a zero row stays zero)."""
    current = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    return z * (norms.reshape(-1, 1) / current.clamp_min(torch.finfo(z.dtype).tiny))
