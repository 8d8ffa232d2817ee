"""The one threat driver: every defence crossed with every attack in a world, scored one way.

A *world* (:class:`ThreatWorld`: the synthetic one, :class:`~.worlds.SyntheticThreatWorld`, or
real photographs, :class:`~.worlds.FacesThreatWorld`) holds the enrolled people, the judges and
the attacker's own data, and knows how to score a reconstruction attack and what a defence costs
in verification. A :class:`Defence` is the gallery as it is stored (and the probes the matcher
compares with it); an attack is any :class:`~.base.Attack` (``name``, ``knowledge``,
``reconstruct``), run by an :class:`AttackRun` that may limit the people it is scored on (slow
attacks) and the defences it is run against. :func:`cross` runs them all; the suites
(:mod:`.suite`, :mod:`.faces_suite`) only choose the defences and attacks and add the attacks on
the rotation's key and unlinkability. Everything is referred to by object, never by name or
position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from .base import Attack


@dataclass(eq=False)
class Defence:
    """A defence as an attacker meets it: ``stored`` ``(N, D)``, the gallery it stole, and
    ``probes`` ``(N, D)``, the fresh probes as the matcher compares them with that gallery
    (rotated with the key where the defence rotates)."""

    name: str
    stored: torch.Tensor
    probes: torch.Tensor


@dataclass(eq=False)
class AttackRun:
    """An attack as a suite runs it: scored on the first ``people`` enrolled people only (None:
    all; for attacks too slow to run on everyone) and against the defences in ``under`` only
    (None: every defence)."""

    attack: Attack
    people: int | None = None
    under: tuple[Defence, ...] | None = None


class ThreatWorld(Protocol):
    """What the driver needs of a world."""

    def utility(self, defence: Defence) -> dict[str, Any]:
        """Verification of the defence's stored gallery against its probes: ``{"acc", "acc_std"}`` (%)
        and ``"operating_point"`` (TAR at FAR 1e-3 and 1e-4 at the clean gallery's threshold and
        re-fitted, :func:`~advface_fast.metrics.operating_point.protected_gallery_operating_points`)."""
        ...

    def score(self, attack: Attack, stored: torch.Tensor, people: int | None, label: str) -> dict[str, float]:
        """Reconstruct the enrolled people from ``stored`` with ``attack`` and judge the faces:
        at least ``identity_inference_E`` and ``identity_inference_E2`` (%), ``rank1_E`` and ``ssim``."""
        ...


def cross(
    world: ThreatWorld,
    defences: Sequence[Defence],
    runs: Sequence[AttackRun],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Every defence against every attack that runs under it: ``{"utility": {defence: {...}},
    "attacks": {defence: {attack: scores}}, "knowledge": {attack: what it holds}}``."""
    names = [r.attack.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"two attacks share a name: {sorted(n for n in names if names.count(n) > 1)}")
    t0 = time.time()
    utility: dict[str, dict[str, Any]] = {}
    table: dict[str, dict[str, dict[str, float]]] = {}
    knowledge: dict[str, str] = {}
    for d in defences:
        utility[d.name] = world.utility(d)
        table[d.name] = {}
        for run in runs:
            if run.under is not None and not any(d is u for u in run.under):
                continue
            table[d.name][run.attack.name] = world.score(
                run.attack, d.stored, run.people, f"{run.attack.name}|{d.name}"
            )
            knowledge[run.attack.name] = run.attack.knowledge.describe()
        log(
            f"{d.name}: acc {utility[d.name]['acc']:.2f}; E2 inference "
            + ", ".join(f"{v['identity_inference_E2']:.1f}" for v in table[d.name].values())
            + f" ({time.time() - t0:.0f} s)"
        )
    return {"utility": utility, "attacks": table, "knowledge": knowledge}
