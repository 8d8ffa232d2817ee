"""The keyed transform between a template and its stored record, as one object.

A gallery's records are its (protected) templates under one of three transforms, named in its
provenance (``protection.transform``):

- ``none``: the templates as they are;
- ``rotation``: one secret orthogonal rotation for the whole system, ``z Q^T`` (:mod:`..rotation`);
- ``shard-rotation``: shard keys (:class:`.ShardKeys`): a keyed hash of each record's enrolment id
  picks one of S independent rotations.

:class:`KeyedTransform` is that choice, made once: the protector turns templates into records
with it (:meth:`KeyedTransform.records`), the provenance names it (:func:`transform_entry`), and
the matcher rebuilds it from the gallery's provenance and the key (:meth:`KeyedTransform.from_entry`)
to put probes into the records' space (:meth:`~KeyedTransform.probes`), score a claimed person's
templates (:meth:`~KeyedTransform.scores`) and search the gallery (:meth:`~KeyedTransform.search`).
Everything that stores or matches records (``protect``, the CLI, the Ray pipeline, the service,
PostgreSQL tables, FAISS indexes) goes through the protector and the matcher, so through this.

The system-wide rotation is applied in the templates' own dtype (the records of existing
galleries, bit for bit); shard keys rotate in float64 and round once.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from ..keys import key_id
from ..rotation import keyed_rotation
from .search import ShardedGallery
from .shards import ShardKeys

NAMES = ("none", "rotation", "shard-rotation")


class Searchable(Protocol):
    """What the transform needs of a gallery (:class:`~advface_fast.match.gallery.ProtectedGallery`)."""

    dim: int

    def __len__(self) -> int: ...
    def scores(self, probe: np.ndarray, ids: np.ndarray) -> np.ndarray: ...
    def search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def stored(self) -> tuple[np.ndarray, np.ndarray]: ...


def transform_entry(key: str | None, rotate: bool, shards: int = 1) -> dict[str, Any]:
    """The provenance entry ``{"name", "key_id"[, "shards"]}`` of records made with key id ``key``
    under ``rotate`` and ``shards`` (a name older readers refuse rather than misread: shard keys
    are never written as ``rotation``)."""
    if not rotate:
        return {"name": "none"}
    if shards > 1:
        return {"name": "shard-rotation", "key_id": key, "shards": int(shards)}
    return {"name": "rotation", "key_id": key}


class KeyedTransform:
    """Records from templates and probes into the records' space for one gallery.

    ``key``: the secret (bytes) or None; ``rotate``: keyed rotation(s) on; ``shards``: S shard keys
    (``1``: one system-wide rotation). Raises ValueError for ``rotate`` without a key and for
    ``shards > 1`` without ``rotate``."""

    def __init__(self, key: bytes | None, rotate: bool, shards: int = 1) -> None:
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
            raise ValueError(f"shards must be a positive integer, got {shards!r}")
        if rotate and key is None:
            raise ValueError("a keyed rotation needs the key")
        if shards > 1 and not rotate:
            raise ValueError(f"shards={shards} needs the rotation (shard keys are rotations)")
        self.key, self.rotate, self.shards = key, bool(rotate), int(shards)
        self._mode = ShardKeys(key, self.shards) if self.shards > 1 else None
        self._system: dict[tuple, torch.Tensor] = {}  # (dim, device, dtype) -> Q of the system-wide key
        self._packed: tuple[ShardedGallery, np.ndarray] | None = None  # search's packed copy, and its ids

    @property
    def name(self) -> str:
        return transform_entry(None, self.rotate, self.shards)["name"]

    def entry(self) -> dict[str, Any]:
        """This transform's provenance entry (:func:`transform_entry`)."""
        return transform_entry(key_id(self.key) if self.key is not None else None, self.rotate, self.shards)

    @classmethod
    def from_entry(cls, entry: dict[str, Any], key: bytes | None, where: str = "the gallery") -> KeyedTransform:
        """The transform a gallery's provenance ``entry`` names, with ``key`` (the secret, or None).
        Raises ValueError, naming ``where``, when the entry is keyed and the key is missing or not
        the gallery's, or when the name is unknown (a gallery of a newer version)."""
        name = entry.get("name")
        if name not in NAMES:
            raise ValueError(f"{where}: unknown transform {name!r} (a newer advface_fast?)")
        if name == "none":
            return cls(None, False)
        if key is None:
            raise ValueError(
                f"{where} is stored under the keyed rotation of key {entry['key_id']}: the matcher needs that key "
                "to transform probes (--key-file)"
            )
        if key_id(key) != entry["key_id"]:
            raise ValueError(
                f"the given key (id {key_id(key)}) is not the key of {where} (id {entry['key_id']}): "
                "its probes would match nobody"
            )
        return cls(key, True, int(entry["shards"]) if name == "shard-rotation" else 1)

    # -- records -------------------------------------------------------------------------------
    def groups(self, ids: np.ndarray) -> np.ndarray | None:
        """Each enrolment id's shard ``(N,)`` int64 under shard keys; None for one space."""
        return self._mode.groups(np.asarray(ids, dtype=np.int64)) if self._mode is not None else None

    def records(self, z: torch.Tensor, groups: np.ndarray | None = None) -> torch.Tensor:
        """The records of templates ``z`` ``(N, D)`` (same dtype and device): ``z`` itself, ``z Q^T``,
        or under shard keys each row by its shard's rotation (``groups`` from :meth:`groups`)."""
        if not self.rotate:
            return z
        if self._mode is not None:
            if groups is None:
                raise ValueError("shard keys need each row's shard (groups from the enrolment ids)")
            return self._mode.apply(z, groups)
        return z @ self._system_rotation(int(z.shape[1]), z.device, z.dtype).T

    def _system_rotation(self, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        k = (dim, device, dtype)
        if k not in self._system:
            self._system[k] = keyed_rotation(self.key, dim).to(device=device, dtype=dtype)
        return self._system[k]

    # -- probes --------------------------------------------------------------------------------
    def probes(self, p: np.ndarray) -> np.ndarray:
        """Unit probes ``(P, D)`` float32 in the records' space where there is one space (``none``,
        ``rotation``); under shard keys unchanged (:meth:`scores` and :meth:`search` rotate them
        per shard)."""
        if not self.rotate or self._mode is not None:
            return p
        q = self._system_rotation(p.shape[1], torch.device("cpu"), torch.float32).numpy()
        return p @ q.T

    def scores(self, gallery: Searchable, probe: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Scores ``(len(ids),)`` of one probe from :meth:`probes` ``(D,)`` against the templates of
        enrolment ``ids``; under shard keys the probe is rotated for each template's shard."""
        if self._mode is None:
            return gallery.scores(probe, ids)
        groups = self._mode.groups(ids)
        out = np.empty(len(ids), dtype=np.float32)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            q = self._mode.rotation(int(g), gallery.dim, torch.float32).numpy()
            out[rows] = gallery.scores(q @ probe, ids[rows])
        return out

    def search(self, gallery: Searchable, probes: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(P, k)`` scores and enrolment ids of probes from :meth:`probes`. Under shard
        keys every probe is rotated once per shard over the gallery's stored vectors, packed once
        by shard (:class:`~.search.ShardedGallery`: a copy in memory, made again when the
        gallery's length changes)."""
        if self._mode is None:
            return gallery.search(probes, k)
        if self._packed is None or len(self._packed[1]) != len(gallery):
            records, ids = gallery.stored()
            vectors = torch.from_numpy(np.ascontiguousarray(records, dtype=np.float32))
            self._packed = (ShardedGallery(self._mode, vectors, self._mode.groups(ids)), ids)
        packed, ids = self._packed
        s, rows = packed.search(torch.from_numpy(probes.astype(np.float32)), k)
        return s.numpy(), ids[rows.numpy()]
