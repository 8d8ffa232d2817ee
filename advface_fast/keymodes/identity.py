"""Per-identity keys: each enrolled identity's records rotated by its own secret matrix, drawn
from the key and the identity's label.

Known pairs reveal only their own identities' matrices, so an insider learns nothing about anyone
else's records from its enrolments, and a single record under a Haar rotation of its own is a
uniformly random direction to anyone without the key. Several records of one identity share its
matrix: their mutual similarities (how alike the person's captures are) stay visible, never which
person it is. The cost: a probe can be compared only with a claimed identity (1:1 verification);
1:N search would rotate each probe once per enrolled identity (``N D^2``, ``D`` times the search
itself), so this mode does not offer it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..keys import derive
from ..rotation import haar_rotation
from .base import KeyMode, keyed_hash64


class IdentityKeys(KeyMode):
    """One secret rotation per identity label (a group is the label's keyed hash)."""

    name = "identity"

    def groups(self, ids: np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
        if labels is None:
            raise ValueError("per-identity keys need each record's identity label")
        if len(labels) != len(np.asarray(ids)):
            raise ValueError(f"{len(labels)} labels for {len(np.asarray(ids))} records")
        return keyed_hash64(self._key, b"identity-of", [str(lab).encode("utf-8") for lab in labels])

    def group_of(self, label: str) -> int:
        """The group of a claimed identity (what a probe is rotated for)."""
        return int(self.groups(np.zeros(1, dtype=np.int64), [label])[0])

    def _draw(self, group: int, dim: int) -> torch.Tensor:
        return haar_rotation(derive(self._key, b"identity/%d/%d" % (group, dim)), dim)
