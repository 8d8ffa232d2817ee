"""The plain inversion attack: a feature-to-image decoder applied to the stolen templates.

Threat model: the attacker has face images of its own and E's templates of them (E as a black
box suffices), trains a decoder on those clean pairs (equation (1) of the paper, or with an
identity loss through a white-box E), and does not know the defence. This is the attacker
AdvFace's paper evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .base import Knowledge, batched


@dataclass
class DecoderAttack:
    """Reconstruct with ``decoder`` as it is."""

    name: str
    decoder: nn.Module
    knowledge: Knowledge = field(default_factory=lambda: Knowledge(encoder="black-box"))

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor:
        return batched(self.decoder, templates)
