"""The AdvFace loop written the way torchattacks writes PGD (``torchattacks.attacks.pgd.PGD``):
``torch.autograd.grad`` of the loss with respect to the input at each step, a sign step, the
perturbation clamped to the eps-ball. The decoder's parameters keep ``requires_grad=True`` as a
user leaves them. (The package itself cannot be installed beside the pinned CPU torch: it
requires torchvision, whose PyPI build fails to import next to that torch; see the env notes.)
"""

from __future__ import annotations

import torch
from torch import nn


def torchattacks_style(
    decoder: nn.Module, z: torch.Tensor, eps: float, alpha: float, steps: int, noise: torch.Tensor
) -> torch.Tensor:
    """Protect ``z`` ``(B, D)`` from the random start ``z + eps * noise`` (``noise`` in [-1, 1))."""
    with torch.no_grad():
        target = decoder(z)  # the shadow image x~
    loss = nn.L1Loss(reduction="sum")
    adv = (z + eps * noise).detach()
    for _ in range(steps):
        adv.requires_grad = True
        cost = loss(decoder(adv), target)
        grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - z, min=-eps, max=eps)
        adv = (z + delta).detach()
    return adv
