"""The engine registry: every implementation of the PGD loop registers itself here, says what it
can run (``supports``) and in one line what it is (``describe``); ``backend="auto"`` walks one
table (:data:`AUTO_ORDER`).

Two kinds of entries: an :class:`Engine` (one implementation, e.g. ``"cuda-nvrtc"``) and a
:class:`Family` (a name for "the best variant of this engine here", e.g. ``"cuda"``: the compiled
C++ loop where it can run, else NVRTC). Asking for a family resolves to one of its engines, so the
engine that ran is always a concrete name. Every engine's ``pgd`` has
:func:`~advface_fast.engines.reference.pgd_ref`'s signature plus ``precision``: ``"fp32"`` (IEEE fp32
GEMMs), ``"tf32"`` (tensor-core tf32, CUDA only) or ``"bf16"`` (bf16 GEMM operands, fp32
accumulation; the sign, the projection and z stay fp32). ``decode(decoder, z, precision)`` is the
shadow image ``S(z)`` with the loop's forward arithmetic (so that at ``z`` itself the L1 signs are
exact zeros).

A backend asked for by name that cannot run raises
:class:`~advface_fast.errors.BackendUnavailableError` with the reason; ``auto`` falls back
silently, at the end to ``"torch"``, which runs any ``nn.Module`` anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import BackendUnavailableError
from ..settings import PRECISIONS
from . import overrides
from .batch import PGDFn

Check = Callable[[nn.Module, torch.device, str], "str | None"]  # None: fine, else the reason it cannot


@dataclass(frozen=True)
class Engine:
    """One implementation of the loop: ``pgd`` and the matching ``decode``, the ``checks`` its
    ``supports`` runs in order, the ``family`` it belongs to (or None) and old names (``aliases``)."""

    name: str
    description: str
    pgd: PGDFn
    decode: Callable[..., torch.Tensor]
    checks: tuple[Check, ...] = ()
    family: str | None = None
    aliases: tuple[str, ...] = ()

    def supports(self, decoder: nn.Module, device: torch.device, precision: str) -> str | None:
        """None if this engine can run ``decoder`` on ``device`` at ``precision``, else why not."""
        for check in (device_ready, *self.checks):
            reason = check(decoder, device, precision)
            if reason is not None:
                return reason
        return None

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class Family:
    """A name that resolves to the first of ``variants(device)`` that can run (the order may
    follow an environment override, :mod:`advface_fast.engines.overrides`)."""

    name: str
    description: str
    variants: Callable[[torch.device], tuple[str, ...]]

    def describe(self) -> str:
        return self.description


ENGINES: dict[str, Engine] = {}
FAMILIES: dict[str, Family] = {}
ALIASES: dict[str, str] = {}
_NAMES: list[str] = []  # every name in the order registered (the CLI lists them so)

# backend="auto": what it tries, best first, per (device type, precision); "other" is any device
# but CUDA. Why this order: benchmarks/results/gpu-*/ (the GPU rows) and cpu_bench.json (the CPU's).
AUTO_ORDER: dict[tuple[str, str], tuple[str, ...]] = {
    ("cuda", "fp32"): ("cuda", "torch"),
    ("cuda", "tf32"): ("cuda", "torch"),
    ("cuda", "bf16"): ("cuda", "triton", "torch"),  # Triton's IEEE fp32 dots lose to cuBLAS in fp32/tf32
    ("other", "fp32"): ("mlp-eager", "torch"),
    ("other", "tf32"): ("mlp-eager", "torch"),
    ("other", "bf16"): ("mlp-eager", "torch"),
}
NEVER_AUTO_UNDER_INTERPRETER = ("triton",)  # the interpreter is a correctness tool, not an engine


def register(entry: Engine | Family) -> Engine | Family:
    """Add an engine or a family (names and aliases must be new)."""
    names = (entry.name, *getattr(entry, "aliases", ()))
    for name in names:
        if name in ENGINES or name in FAMILIES or name in ALIASES or name == "auto":
            raise ValueError(f"engine name {name!r} is already registered")
    if isinstance(entry, Family):
        FAMILIES[entry.name] = entry
    else:
        ENGINES[entry.name] = entry
        ALIASES.update({alias: entry.name for alias in entry.aliases})
    _NAMES.extend(names)
    return entry


def backend_names() -> tuple[str, ...]:
    """Every accepted ``backend=``: ``auto``, then each family, engine and alias as registered."""
    return ("auto", *_NAMES)


# --- checks shared by the engines ----------------------------------------------------------------


def device_ready(decoder: nn.Module, device: torch.device, precision: str) -> str | None:
    """Every engine's first check: a CUDA device must exist; tf32 needs one."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    if precision == "tf32" and device.type != "cuda":
        return "precision 'tf32' needs a CUDA device"
    return None


def mlp_decoder_only(label: str) -> Check:
    """The fast engines' decoder family: exactly :class:`~advface_fast.models.decoders.MLPDecoder` (a
    subclass may change ``forward``, which the engines would not see), in float32 (the GEMM
    precision is ``precision=``'s business)."""

    def check(decoder: nn.Module, device: torch.device, precision: str) -> str | None:
        from ..models.decoders import MLPDecoder

        if type(decoder) is not MLPDecoder:
            return f"{label} runs MLPDecoder only, got {type(decoder).__name__}"
        param = next(decoder.parameters(), None)
        if param is not None and param.dtype != torch.float32:
            return f"{label} takes a float32 decoder (precision is chosen with precision=), got {param.dtype}"
        return None

    return check


def nvidia_gpu_only(family: str, interpreter_ok: bool = False) -> Check:
    """A CUDA device (or, ``interpreter_ok``, the CPU under ``TRITON_INTERPRET=1``)."""

    def check(decoder: nn.Module, device: torch.device, precision: str) -> str | None:
        if device.type == "cuda" or (interpreter_ok and device.type == "cpu" and overrides.triton_interpret()):
            return None
        return f"the {family} backend runs on NVIDIA GPUs; the compute device is {device}"

    return check


# --- resolution ----------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


def supports(name: str, decoder: nn.Module, device: torch.device, precision: str) -> tuple[Engine | None, str | None]:
    """``(engine that would run, None)`` or ``(None, why nothing under this name can)``."""
    name = _canonical(name)
    if name in ENGINES:
        reason = ENGINES[name].supports(decoder, device, precision)
        return (ENGINES[name], None) if reason is None else (None, reason)
    reasons: dict[str, str] = {}
    for variant in FAMILIES[name].variants(device):
        engine, reason = supports(variant, decoder, device, precision)
        if engine is not None:
            return engine, None
        reasons[variant] = reason
    if len(set(reasons.values())) == 1:  # the same reason for every variant (no GPU, wrong decoder)
        return None, next(iter(reasons.values()))
    return None, "; ".join(f"{k}: {v}" for k, v in reasons.items())


def auto_candidates(device: torch.device, precision: str) -> tuple[str, ...]:
    """What ``backend="auto"`` tries on ``device`` at ``precision``, best first (:data:`AUTO_ORDER`)."""
    order = AUTO_ORDER[("cuda" if device.type == "cuda" else "other", precision)]
    if overrides.triton_interpret():
        order = tuple(n for n in order if n not in NEVER_AUTO_UNDER_INTERPRETER)
    return order


def _check_names(name: str, precision: str) -> None:
    if name not in backend_names():
        raise ValueError(f"backend={name!r} is not one of {', '.join(map(repr, backend_names()))}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(map(repr, PRECISIONS))}")


def resolve_backend(name: str, decoder: nn.Module, device: torch.device, precision: str = "fp32") -> Engine:
    """The engine that will run ``decoder`` on ``device`` for ``backend=name``."""
    _check_names(name, precision)
    if name != "auto":
        engine, reason = supports(name, decoder, device, precision)
        if engine is None:
            raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
        return engine
    for cand in auto_candidates(device, precision):
        engine, _ = supports(cand, decoder, device, precision)
        if engine is not None:
            return engine
    raise BackendUnavailableError(f"no backend can run here: {supports('torch', decoder, device, precision)[1]}")


def available_backends(
    decoder: nn.Module | None = None, device: str | torch.device = "cpu", precision: str = "fp32"
) -> dict[str, str | None]:
    """``{name: None if it can run, else the reason}`` for every family, engine and alias (the
    decoder defaults to a small MLPDecoder)."""
    from ..models.decoders import MLPDecoder

    dec = decoder if decoder is not None else MLPDecoder(8, [8], (1, 2, 2))
    dev = torch.device(device)
    return {n: supports(n, dec, dev, precision)[1] for n in backend_names()[1:]}
