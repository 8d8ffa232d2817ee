"""The system-wide key: every record in one group, rotated by the key's one matrix (the rotation
:func:`advface_fast.rotation.rotate` applies, so existing galleries keep their records)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..rotation import keyed_rotation
from .base import KeyMode


class SystemKey(KeyMode):
    """One secret rotation for the whole system: cheapest (one probe rotation per search), and
    learnable from known pairs (Procrustes from about ``D`` of them, fewer with a prior)."""

    name = "system"

    def groups(self, ids: np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
        return np.zeros(len(np.asarray(ids)), dtype=np.int64)

    def _draw(self, group: int, dim: int) -> torch.Tensor:
        return keyed_rotation(self._key, dim)
