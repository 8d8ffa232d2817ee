"""The AdvFace loop written the way advertorch writes PGD
(``advertorch.attacks.iterative_projected_gradient.perturb_iterative``): a ``delta`` leaf,
``loss.backward()`` each step with the decoder's parameters still requiring grad (as users leave
them, so every step also computes and accumulates weight gradients), a sign step on
``delta.grad``, a clamp, ``delta.grad.zero_()``. (advertorch 0.2.3, its last release, does not
import on current torch without a shim; ``real_packages.py`` runs it with one.)
"""

from __future__ import annotations

import torch
from torch import nn


def advertorch_style(
    decoder: nn.Module, z: torch.Tensor, eps: float, alpha: float, steps: int, noise: torch.Tensor
) -> torch.Tensor:
    """Protect ``z`` ``(B, D)`` from the random start ``z + eps * noise`` (``noise`` in [-1, 1))."""
    with torch.no_grad():
        target = decoder(z)
    loss_fn = nn.L1Loss(reduction="sum")
    delta = (eps * noise).clone()
    delta.requires_grad_()
    for _ in range(steps):
        loss = loss_fn(decoder(z + delta), target)
        loss.backward()
        grad_sign = delta.grad.data.sign()
        delta.data = delta.data + alpha * grad_sign
        delta.data = torch.clamp(delta.data, -eps, eps)
        delta.grad.data.zero_()
    decoder.zero_grad(set_to_none=True)
    return (z + delta).detach()
