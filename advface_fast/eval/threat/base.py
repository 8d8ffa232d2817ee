"""What every attack of the threat-model suite is: what it knows, how it is fitted, what it outputs.

An attack reconstructs face images ``(N, C, H, W)`` in [-1, 1] from stolen stored templates
``(N, D)``. :class:`Knowledge` states what it holds besides the templates (the suite's tables
print it), so every number comes with its attacker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

DEFENDER_KEY = b"defender-secret-key-never-shipped"  # the suites' stand-in for a user's key file


@dataclass(frozen=True)
class Knowledge:
    """What an attacker holds besides the stolen templates.

    encoder: ``"none"``, ``"black-box"`` (can query E) or ``"white-box"`` (E's weights).
    algorithm: knows AdvFace and the package (it is public) and can run it.
    settings: knows the defence's settings (eps, steps, start) or guesses them.
    shadow: which shadow decoder it runs the defence with: ``"none"``, ``"shipped"`` (the
        package's public one), ``"own"`` (trained itself, another architecture).
    key: holds the defender's secret key.
    own_faces: has face images of its own (with E's templates of them).
    """

    encoder: str = "none"
    algorithm: bool = False
    settings: str = "none"
    shadow: str = "none"
    key: bool = False
    own_faces: bool = True

    def describe(self) -> str:
        parts = [f"E {self.encoder}"]
        if self.algorithm:
            parts.append(f"runs AdvFace (settings {self.settings}, {self.shadow} shadow)")
        parts.append("has the key" if self.key else "no key")
        return "; ".join(parts)


class Attack(Protocol):
    """``name``, ``knowledge`` and ``reconstruct(templates) -> images``."""

    name: str
    knowledge: Knowledge

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor: ...


def batched(fn, x: torch.Tensor, size: int = 512) -> torch.Tensor:
    """``fn`` over ``x`` in chunks, without autograd."""
    with torch.no_grad():
        return torch.cat([fn(x[a : a + size]) for a in range(0, len(x), size)])
