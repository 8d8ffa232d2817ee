"""The settings of a protection run, at the bottom of the import graph: the start modes, the GEMM
precisions, the library defaults and how they scale with the template dimension, the settings of
a run as users give them (:class:`RunSettings`) and as the loop takes them (:class:`ProtectParams`),
both validated on construction. Everything above (the engines, the Protector,
the CLI, the Triton kernels) reads them from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

START_MODES = ("shadow", "random", "original")
PRECISIONS = ("fp32", "tf32", "bf16")  # GEMM operand precision inside the loop (see engines)

# Library defaults, chosen at the operating point a deployed system runs at (docs/method.md,
# "Choosing eps and the threshold"): the largest eps on the measured frontier whose cost stays within 1 point of
# TAR at FAR 1e-3 with the threshold re-fitted on the protected gallery, on LFW with SFace (0.94
# points at 0.04 against 2.2 at 0.06 and 4.0 at the former 0.08) and with MobileFaceNet on LFW and
# on CelebA identity folders (0.47 and 0.88 points at the same relative eps); see
# benchmarks/results/operating-point-*. The random start keeps best-threshold accuracy where the
# paper's shadow start costs several points.
DEFAULT_EPS, DEFAULT_ALPHA, DEFAULT_STEPS, DEFAULT_START = 0.04, 0.008, 10, "random"
# DEFAULT_EPS is the radius at REFERENCE_DIM dimensions. A sign-step perturbation fills its L-inf
# ball's corners, so its L2 size is ~eps sqrt(D) against a unit template: at a fixed eps a 512-d
# template moves twice as far as a 128-d one (mean cosine 0.49 against 0.77 at eps 0.08). The
# default therefore scales as 1/sqrt(D) (default_eps), which keeps the relative size of the ball,
# and alpha stays eps / 5.
REFERENCE_DIM = 128
DEFAULT_ALPHA_RATIO = DEFAULT_ALPHA / DEFAULT_EPS


def default_eps(dim: int) -> float:
    """The default L-inf radius for ``dim``-dimensional unit-norm templates: ``0.04 sqrt(128 / dim)``
    (0.04 at 128-d, 0.02 at 512-d), the same relative perturbation at every dimension."""
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


@dataclass(frozen=True)
class RunSettings:
    """The settings of a protection run, defined once: :class:`~advface_fast.Protector`,
    :func:`~advface_fast.protect`, :func:`~advface_fast.distributed.protect_distributed`, the
    service and the CLI take these fields as keywords (or one ``settings=RunSettings(...)``).
    Validated on construction (the engine name when an engine is resolved).

    eps: L-inf radius of the perturbation around the centre ``c`` (> 0). Default ``None``:
        :func:`default_eps` of the features' dimension ``D``, ``0.04 sqrt(128 / D)`` (0.04 at 128-d,
        0.02 at 512-d), the same relative perturbation at any D.
    alpha: step size (> 0). Default ``None``: ``eps / 5``.
    steps: number of sign steps (>= 0).
    start: ``"random"`` (default), ``"shadow"`` (the paper) or ``"original"`` (see
        :class:`ProtectParams`). The defaults come from the evaluation harness's sweep (README,
        "Choosing the defaults"); they are tuned for unit-norm templates.
    renorm: rescale each result row to its input row's L2 norm.
    backend: the engine, ``"auto"`` or a name ``advface-fast backends`` lists
        (:mod:`advface_fast.engines`).
    precision: GEMMs of the loop in ``"fp32"`` (IEEE), ``"tf32"`` (CUDA tensor cores) or
        ``"bf16"`` (bf16 operands, fp32 accumulation; signs, projection and z stay fp32). Lower
        precision rounds some near-zero gradients to the other sign: a different, equally valid
        protected feature, not a bit-identical one.
    seed: seed of the random start (public: anyone can recompute that noise).
    key: the defender's secret (bytes or a key file, :mod:`advface_fast.keys`): keys the random
        start's noise per row by a keyed hash instead of the public ``seed`` alone. Without it,
        ``start="random"`` warns (:class:`~advface_fast.errors.PublicRandomnessWarning`).
    rotate: store ``Q z~`` for the key's secret orthogonal ``Q`` (needs ``key``); probes must be
        rotated with :func:`advface_fast.rotation.rotate` and the same key before matching.
    shards: with ``rotate``, the number of shard keys (:class:`~advface_fast.keymodes.ShardKeys`):
        a keyed hash of each row's enrolment id picks one of ``shards`` independent secret
        rotations, so an insider's own enrolments reveal only their shards' (default 1: one
        system-wide rotation). The matcher (:class:`~advface_fast.match.matcher.Matcher`) rotates
        each probe once per shard it compares with.
    batch_size: rows per batch (default 256 on CPU, 8192 on CUDA).
    device: compute device (default: the input's CUDA device, else CUDA if available, else CPU).
    progress: show a tqdm progress bar.
    """

    eps: float | None = None
    alpha: float | None = None
    steps: int = DEFAULT_STEPS
    start: str = DEFAULT_START
    renorm: bool = True
    backend: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    key: Any = None
    rotate: bool = False
    shards: int = 1
    batch_size: int | None = None
    device: Any = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.params(REFERENCE_DIM)  # validates eps, alpha, steps, start, seed (defaults resolved per dimension later)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {', '.join(map(repr, PRECISIONS))}")
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a name, got {self.backend!r}")
        b = self.batch_size
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ValueError(f"batch_size must be a positive integer, got {b!r}")
        if self.rotate and self.key is None:
            raise ValueError("rotate=True needs key= (the rotation is the key's secret)")
        s = self.shards
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ValueError(f"shards must be a positive integer, got {s!r}")
        if s > 1 and not self.rotate:
            raise ValueError(f"shards={s} needs rotate=True (shard keys are rotations)")

    @classmethod
    def of(cls, settings: RunSettings | None = None, **keywords: Any) -> RunSettings:
        """``settings`` (default: the defaults) with ``keywords`` replacing fields; an unknown
        keyword is a TypeError that lists the settings."""
        unknown = sorted(set(keywords) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(
                f"unknown protection setting(s) {', '.join(map(repr, unknown))}; the settings are "
                + ", ".join(f.name for f in fields(cls))
            )
        base = settings if settings is not None else cls()
        if not isinstance(base, cls):
            raise TypeError(f"settings must be a RunSettings, got {type(base).__name__}")
        return replace(base, **keywords) if keywords else base

    def params(self, dim: int) -> ProtectParams:
        """The loop's parameters for ``dim``-dimensional features (eps, alpha defaults resolved)."""
        e, a = resolve_eps_alpha(self.eps, self.alpha, dim)
        return ProtectParams(
            eps=e, alpha=a, steps=self.steps, start=self.start, renorm=bool(self.renorm), seed=self.seed
        )
