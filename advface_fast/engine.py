"""One batch of the AdvFace protection: shadow image, start point, the PGD loop, re-normalisation.

The loop itself (``pgd``) comes from a backend; everything around it is shared by all backends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import NonFiniteError
from .reference import renorm_ref
from .seeding import row_uniform

START_MODES = ("shadow", "random", "original")
PRECISIONS = ("fp32", "tf32", "bf16")  # GEMM operand precision inside the loop (see backends)

# Library defaults, chosen from the privacy-utility sweep of the evaluation harness
# (benchmarks/results/eval/report.md, synthetic-face world, 500 held-out people): from a random
# start, eps 0.08 keeps 10-fold verification accuracy at 99.3% (unprotected 99.1%) and holds every
# non-adaptive attacker architecture to <= 5.6% identity inference (unprotected: up to 69.8%).
# The paper's shadow start stops attackers as well but costs 3.3 points of accuracy there.
DEFAULT_EPS, DEFAULT_ALPHA, DEFAULT_STEPS, DEFAULT_START = 0.08, 0.016, 10, "random"
# DEFAULT_EPS is the radius at REFERENCE_DIM dimensions. A sign-step perturbation fills its L-inf
# ball's corners, so its L2 size is ~eps sqrt(D) against a unit template: at a fixed eps a 512-d
# template moves twice as far as a 128-d one (mean cosine 0.49 against 0.77 at 0.08). The
# default therefore scales as 1/sqrt(D) (default_eps), which keeps the relative size of the ball,
# and alpha stays eps / 5.
REFERENCE_DIM = 128
DEFAULT_ALPHA_RATIO = DEFAULT_ALPHA / DEFAULT_EPS


def default_eps(dim: int) -> float:
    """The default L-inf radius for ``dim``-dimensional unit-norm templates: ``0.08 sqrt(128 / dim)``
    (0.08 at 128-d, 0.04 at 512-d), the same relative perturbation at every dimension."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    return DEFAULT_EPS * math.sqrt(REFERENCE_DIM / dim)


def resolve_eps_alpha(eps: float | None, alpha: float | None, dim: int) -> tuple[float, float]:
    """``eps=None`` -> :func:`default_eps` of ``dim``; ``alpha=None`` -> ``eps / 5``."""
    e = default_eps(dim) if eps is None else eps
    return e, (e * DEFAULT_ALPHA_RATIO if alpha is None else alpha)


PGDFn = Callable[..., torch.Tensor]  # pgd_ref's signature plus precision=

if TYPE_CHECKING:
    from .backends import Backend


@dataclass(frozen=True)
class ProtectParams:
    """The settings of a protection run (validated on construction).

    eps: radius of the L-inf ball around the centre (> 0).
    alpha: sign-step size (> 0).
    steps: number of PGD steps (>= 0).
    start: ``"shadow"`` (paper: start and centre at E(S(z)), or E(images) online),
        ``"random"`` (centre z, start z + U(-eps, eps)), ``"original"`` (start and centre z).
    renorm: rescale each protected row to its input row's L2 norm (unit-norm galleries stay on
        the unit sphere).
    seed: seed of the random start; the noise of a row depends only on (seed, row id).
    """

    eps: float
    alpha: float
    steps: int
    start: str = DEFAULT_START
    renorm: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("eps", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.start not in START_MODES:
            raise ValueError(f"start={self.start!r} is not one of {', '.join(map(repr, START_MODES))}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        if not 0 <= self.seed < 2**64:  # the noise hash takes 64 bits: larger seeds would collide
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")


@torch.no_grad()
def protect_batch(
    z: torch.Tensor,
    row_ids: torch.Tensor,
    decoder: nn.Module,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None,
    params: ProtectParams,
    backend: Backend,
    images: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Protect one batch.

    Args:
        z: stored features ``(B, D)`` in the compute dtype, on the compute device.
        row_ids: ``(B,)`` int64 global ids of the rows (key of the random start).
        decoder: frozen shadow decoder in eval mode.
        encoder: face encoder (required for ``start="shadow"``).
        params: the run's settings.
        backend: the backend (its ``decode`` and ``pgd``).
        images: online mode: the original images ``(B, *out_shape)``, the L1 target instead of the
            shadow image.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` GEMMs inside the loop (see backends).

    Returns the protected features ``(B, D)``, same dtype and device as ``z``.
    """
    target = backend.decode(decoder, z, precision) if images is None else images  # x~, eq. (3), or x online
    if images is None and not bool(torch.isfinite(target).all()):
        # NaN images give NaN signs -> zero steps: the "protected" rows would be the start point
        raise NonFiniteError(
            "the shadow decoder produced NaN or Inf images for these features (NaN weights or an overflow): "
            "nothing was protected"
        )
    if params.start == "shadow":
        if encoder is None:
            raise ValueError('start="shadow" needs an encoder')
        centre = encoder(target).to(z.dtype)  # z~ = E(x~)
        if centre.shape != z.shape:
            raise ValueError(f"the encoder returned features of shape {tuple(centre.shape)}, expected {tuple(z.shape)}")
        if not bool(torch.isfinite(centre).all()):
            raise NonFiniteError(
                "the encoder returned NaN or Inf features for the shadow images: nothing was protected"
            )
        z0 = centre
    else:
        centre = z
        z0 = z
        if params.start == "random":
            noise = row_uniform(params.seed, row_ids, z.shape[1], device=z.device, dtype=z.dtype)
            z0 = torch.clamp(z + params.eps * noise, z - params.eps, z + params.eps)
    zt = backend.pgd(decoder, z0, centre, target, params.eps, params.alpha, params.steps, precision=precision)
    if params.renorm:
        zt = renorm_ref(zt, torch.linalg.vector_norm(z, dim=1))
    if not bool(torch.isfinite(zt).all()):
        raise NonFiniteError(
            f"protection produced NaN or Inf (features up to {float(z.abs().max()):.3g}, eps {params.eps:g}, alpha "
            f"{params.alpha:g}): the settings or the features are out of range; nothing was written for these rows"
        )
    return zt
