"""Protection methods as the harness sees them: one class per method.

Two kinds:

- :class:`TemplateMethod`: the system's encoder is unchanged and the method transforms the
  stored templates (AdvFace, noise, differential privacy; :mod:`.template_methods`).
  ``apply(z, stream)`` -> stored templates; probes stay clean encoder features.
- :class:`InputMethod`: the method brings its own recognition model over a transformed input
  (DuetFace, PartialFace, MinusFace, ...): it is trained on the world's training faces
  (``fit``), stores ``encode(images)`` as templates and matches probes encoded the same way;
  ``server_view(images)`` is what the server receives besides the templates (for DuetFace the
  high-frequency channels), which the harness attacks too.

A new baseline is one subclass registered with :func:`register_method`;
:func:`~advface_fast.eval.input_methods.evaluate_input_method` runs an input method through the
same verification and attack pipeline as the template rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch

METHODS: dict[str, type[TemplateMethod] | type[InputMethod]] = {}


def register_method(cls: type) -> type:
    """Add a method class to :data:`METHODS` under its ``name``."""
    METHODS[cls.name] = cls
    return cls


class TemplateMethod(ABC):
    """Transforms stored templates of an unchanged encoder."""

    name: ClassVar[str]
    kind: ClassVar[str] = "template"

    @property
    def label(self) -> str:
        """The row's name in reports (the method and its setting)."""
        return self.name

    @abstractmethod
    def apply(self, z: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """Stored templates ``(N, D)`` for clean templates ``z`` ``(N, D)``. ``stream`` separates
        independent randomness: 0 for the enrolled gallery, 1 for probes protected the same way,
        2 for the adaptive attacker's own faces."""


class InputMethod(ABC):
    """Its own recognition model over a transformed input."""

    name: ClassVar[str]
    kind: ClassVar[str] = "input"

    @abstractmethod
    def fit(self, images: torch.Tensor, labels: torch.Tensor, val: tuple, cache: Path, log: Any) -> dict:
        """Train (or load from ``cache``) on ``images`` ``(N, 3, S, S)`` in [-1, 1]; returns the history."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm templates ``(N, D)`` of ``images``: what the system stores and matches."""

    def server_view(self, images: torch.Tensor) -> torch.Tensor | None:
        """What the server receives of each face besides its template (None: nothing)."""
        return None
