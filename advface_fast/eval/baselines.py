"""Baseline defences run through the same pipeline as AdvFace. Each takes unit-norm templates
``(N, D)`` and returns perturbed ones, re-normalised to the input norms like AdvFace's result.

- :func:`uniform_linf`: uniform noise filling the same L-inf ball (radius ``eps``);
- :func:`gaussian_same_l2`: a random direction scaled to the per-row L2 norm of AdvFace's own
  perturbation (the same distortion budget, spent at random);
- :func:`laplace_dp`: the Laplace mechanism: per-coordinate noise of scale ``b = Delta_1 /
  epsilon`` with L1 sensitivity ``Delta_1 = 2 sqrt(D)`` (the largest L1 distance between two unit
  vectors in D dimensions), which makes the released template ``epsilon``-differentially private
  with respect to replacing the face behind it.
"""

from __future__ import annotations

import math

import torch

from ..engines.reference import renorm_ref
from ..engines.seeding import row_uniform


def _renorm(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return renorm_ref(out, torch.linalg.vector_norm(z, dim=1))


def uniform_linf(z: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    """``z + U(-eps, eps)`` per element, re-normalised."""
    u = row_uniform(seed ^ 0x11F, torch.arange(len(z)), z.shape[1]).to(z)
    return _renorm(z + eps * u, z)


def gaussian_same_l2(z: torch.Tensor, reference: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random direction with the L2 norm of ``reference - z`` per row (``reference``: AdvFace's
    output for the same rows), re-normalised."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(z.shape, generator=g, dtype=torch.float64).to(z)
    d = (
        d
        / torch.linalg.vector_norm(d, dim=1, keepdim=True)
        * torch.linalg.vector_norm(reference - z, dim=1, keepdim=True)
    )
    return _renorm(z + d, z)


def laplace_sensitivity(dim: int) -> float:
    """L1 sensitivity of a unit-norm D-dimensional template: ``2 sqrt(D)``."""
    return 2 * math.sqrt(dim)


def laplace_dp(z: torch.Tensor, epsilon: float, seed: int = 0) -> torch.Tensor:
    """The Laplace mechanism with privacy parameter ``epsilon`` (scale ``2 sqrt(D) / epsilon``), re-normalised."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    scale = laplace_sensitivity(z.shape[1]) / epsilon
    g = torch.Generator().manual_seed(seed)
    lap = torch.distributions.Laplace(0.0, scale)
    u = torch.rand(z.shape, generator=g, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    noise = lap.icdf(u).to(z)
    return _renorm(z + noise, z)
