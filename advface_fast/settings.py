"""The settings of a protection run, at the bottom of the import graph: the start modes, the GEMM
precisions, the library defaults and how they scale with the template dimension, and
:class:`ProtectParams` (validated on construction). Everything above (the engines, the Protector,
the CLI, the Triton kernels) reads them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
