"""White-box optimisation over random views (expectation over transformation, EOT).

Threat model: as :mod:`.optimisation` (E's weights and the stolen template ``t``; here also a
decoder's guess as the start, from the attacker's own face data). It solves

    max_x  E_v[ cos(E(v(x)), t) ] - tv * TV(x),   x in [-1, 1]

where ``v`` is a random view of the image, drawn afresh at each Adam step: a horizontal flip,
a rescale, a shift and a brightness/contrast change (Athalye et al., "Synthesizing Robust
Adversarial Examples", ICML 2018). Plain optimisation finds an image that E matches to ``t``
whatever it looks like (an adversarial example of E); an image that E matches under every small
view must carry the face's structure, so another recogniser (the independent judge) accepts it
far more often. It is the strongest inversion attacker of the real-faces evaluation: on clean
LFW templates it is what the key modes' judged ceiling is measured with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from .base import Knowledge
from .optimisation import OptimisationAttack


@dataclass
class RandomView:
    """A random view of a batch of images ``(N, C, H, W)`` in [-1, 1], one view for the whole
    batch per call: flipped with probability 1/2, rescaled by a factor in ``1 +- scale`` about the
    centre, shifted by up to ``shift`` pixels (reflect padding), contrast ``1 +- jitter`` and
    brightness ``+- jitter / 2``, clamped to [-1, 1]. Differentiable in the images; the draws come
    from its own generator (seeded), so a run repeats."""

    shift: int = 4
    scale: float = 0.1
    jitter: float = 0.1
    seed: int = 0
    _gen: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.shift < 0 or not 0 <= self.scale < 1 or self.jitter < 0:
            raise ValueError(f"shift >= 0, 0 <= scale < 1 and jitter >= 0 required, got {self}")
        self._gen = torch.Generator().manual_seed(self.seed)

    def _uniform(self, half_width: float) -> float:
        return float((2 * torch.rand(1, generator=self._gen) - 1) * half_width)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(x.shape)}")
        if torch.rand(1, generator=self._gen) < 0.5:
            x = x.flip(-1)
        h, w = x.shape[-2:]
        s = 1 + self._uniform(self.scale)
        dx, dy = (int(v) for v in torch.randint(-self.shift, self.shift + 1, (2,), generator=self._gen))
        # one affine sample grid: scale about the centre, then shift (in normalised coordinates)
        theta = torch.tensor([[1 / s, 0, -2 * dx / w], [0, 1 / s, -2 * dy / h]], dtype=x.dtype)
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        contrast, brightness = 1 + self._uniform(self.jitter), self._uniform(self.jitter / 2)
        return (y * contrast + brightness).clamp(-1, 1)


@dataclass
class EOTOptimisationAttack(OptimisationAttack):
    """:class:`~.optimisation.OptimisationAttack` over :class:`RandomView` views, from
    ``prior(templates)`` (a decoder's guess) or a flat grey image; 25 steps by default."""

    steps: int = 25
    knowledge: Knowledge = field(default_factory=lambda: Knowledge(encoder="white-box"))
    view: Callable[[torch.Tensor], torch.Tensor] | None = field(default_factory=RandomView)

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor:
        """Images ``(N, *shape)`` in (-1, 1), float32, for templates ``(N, D)`` (any norm)."""
        return super().reconstruct(templates.float())

    def __call__(self, templates: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`reconstruct`, so the attack stands where a decoder module is expected."""
        return self.reconstruct(templates)
