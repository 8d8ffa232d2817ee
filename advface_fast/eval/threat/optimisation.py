"""White-box optimisation: find an image whose template matches the stolen one.

Threat model: the attacker has E's weights (white box) and the stolen template ``t``, and no face
data at all. It solves

    max_x  cos(E(x), t) - tv * TV(x),   x in [-1, 1]

by Adam from a flat grey image (optionally from a decoder's output, a face prior). The result
need not look like the person: it is a *presentation* of the template, which is why a
template that still verifies can always be matched this way; the independent recogniser and
SSIM tell whether it is also a face of that person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import Knowledge


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def optimise_images(
    encoder_features: Callable[[torch.Tensor], torch.Tensor],
    templates: torch.Tensor,
    shape: tuple[int, ...],
    *,
    init: torch.Tensor | None = None,
    steps: int = 200,
    lr: float = 0.05,
    tv: float = 0.05,
    view: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Images ``(N, *shape)`` optimised so that ``encoder_features(x)`` matches ``templates``;
    returns them and the mean cosine after each step. ``view`` (differentiable, images to images)
    is applied before E at each step: a random one makes the objective an expectation over views
    (:mod:`.eot_optimisation`); None optimises the image as it is."""
    x = (init.clone() if init is not None else torch.zeros(len(templates), *shape)).clamp(-0.999, 0.999)
    w = torch.atanh(x).requires_grad_(True)  # x = tanh(w) keeps the box without clipping
    opt = torch.optim.Adam([w], lr=lr)
    trace = []
    for _ in range(steps):
        img = torch.tanh(w)
        cos = nn.functional.cosine_similarity(encoder_features(view(img) if view else img), templates, dim=1)
        loss = -cos.mean() + tv * total_variation(img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trace.append(float(cos.detach().mean()))
    return torch.tanh(w).detach(), trace


@dataclass
class OptimisationAttack:
    """:func:`optimise_images` through a white-box E, optionally from a decoder's guess
    (``prior``) and over random views of the image (``view``; see :mod:`.eot_optimisation`)."""

    name: str
    encoder_features: Callable[[torch.Tensor], torch.Tensor]
    shape: tuple[int, ...]
    prior: nn.Module | None = None
    steps: int = 200
    knowledge: Knowledge = field(default_factory=lambda: Knowledge(encoder="white-box", own_faces=False))
    view: Callable[[torch.Tensor], torch.Tensor] | None = None

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor:
        init = None
        if self.prior is not None:
            with torch.no_grad():
                init = self.prior(templates)
        with torch.enable_grad():  # callers may score under no_grad; the attack needs autograd
            return optimise_images(
                self.encoder_features, templates, self.shape, init=init, steps=self.steps, view=self.view
            )[0]
