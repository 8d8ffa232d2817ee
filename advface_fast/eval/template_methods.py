"""The template-side methods of the harness (:class:`~advface_fast.eval.methods.TemplateMethod`):
unprotected, AdvFace, and the noise baselines of :mod:`.baselines`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .baselines import gaussian_same_l2, laplace_dp, uniform_linf
from .methods import TemplateMethod, register_method

STREAM_ROWS = 10**7  # AdvFace row ids of stream s start at s * STREAM_ROWS: no two streams share noise


@register_method
class Unprotected(TemplateMethod):
    name = "unprotected"

    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        return z


@register_method
class AdvFace(TemplateMethod):
    """``protect`` through ``protect_fn(z, row_offset) -> templates`` (the harness binds the
    decoder, encoder and settings); row ids of ``stream`` start at ``stream * 10**7``."""

    name = "AdvFace"

    def __init__(self, protect_fn: Callable[[torch.Tensor, int], torch.Tensor], label: str) -> None:
        self._protect, self._label = protect_fn, label

    @property
    def label(self) -> str:
        return self._label

    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        return self._protect(z, stream * STREAM_ROWS)


@register_method
class UniformNoise(TemplateMethod):
    """Uniform noise filling the L-inf ball of radius ``eps``."""

    name = "uniform noise"

    def __init__(self, eps: float, seed: int = 0) -> None:
        self.eps, self.seed = eps, seed

    @property
    def label(self) -> str:
        return f"uniform noise, L-inf {self.eps}"

    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        return uniform_linf(z, self.eps, self.seed + stream)


@register_method
class GaussianSameL2(TemplateMethod):
    """A random direction with the L2 norm of ``reference``'s perturbation of the same rows."""

    name = "Gaussian noise"

    def __init__(self, reference: TemplateMethod, seed: int = 0) -> None:
        self.reference, self.seed = reference, seed

    @property
    def label(self) -> str:
        return f"Gaussian noise, {self.reference.name}'s L2"

    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        return gaussian_same_l2(z, self.reference.apply(z, stream), self.seed + stream)


@register_method
class LaplaceDP(TemplateMethod):
    """The Laplace mechanism with privacy parameter ``epsilon``."""

    name = "Laplace DP"

    def __init__(self, epsilon: float, seed: int = 0) -> None:
        self.epsilon, self.seed = epsilon, seed

    @property
    def label(self) -> str:
        return f"Laplace DP, epsilon {self.epsilon:g}"

    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        return laplace_dp(z, self.epsilon, self.seed + stream)
