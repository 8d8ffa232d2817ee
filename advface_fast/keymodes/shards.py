"""Per-shard keys: a keyed hash of a record's enrolment id picks one of ``S`` shards, each with its
own secret rotation.

An insider's own enrolments land in shards it cannot choose; its known pairs then reveal only the
matrices of those shards, about ``P / S`` pairs each for ``P`` pairs. The database shows which
records share a shard (the shard must be known to search it), so the rest of a shard is exposed as
far as its few pairs allow. 1:N search rotates each probe ``S`` times (``S D^2`` multiply-adds
beside the ``N D`` of the search itself: within 2x of the system-wide key while ``S <= N / D``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..keys import KeyLike, derive, id_bytes
from ..rotation import haar_rotation
from .base import KeyMode, keyed_hash64


class ShardKeys(KeyMode):
    """``shards`` secret rotations; a record's shard is a keyed hash of its enrolment id mod ``shards``."""

    name = "shards"

    def __init__(self, key: KeyLike, shards: int) -> None:
        if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        super().__init__(key)
        self.shards = shards

    def groups(self, ids: np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
        return keyed_hash64(self._key, b"shard-of", id_bytes(ids)) % self.shards

    def _draw(self, group: int, dim: int) -> torch.Tensor:
        if not 0 <= group < self.shards:
            raise ValueError(f"shard {group} is not one of 0..{self.shards - 1}")
        return haar_rotation(derive(self._key, b"shard/%d/%d/%d" % (self.shards, group, dim)), dim)
