"""Verify and identify decisions against a protected gallery.

The matcher owns what an operator must not do by hand: it checks the gallery's provenance, holds
the key, applies the gallery's keyed transform to every probe (so an unrotated probe against a
rotated gallery cannot happen), refuses a key of another gallery and a probe of another encoder
by name, and decides at the deployment configuration's threshold (``accept = cosine >
threshold``), fitted for the FAR the configuration states. It answers decisions; the score is
in :class:`Decision` for the operator's own logs, never needed to decide.

With ``N`` enrolled templates, an identify search compares a probe with all of them, so the
chance that some impostor passes a threshold fitted at FAR ``f`` per comparison is about
``N * f``: run identification at a configuration fitted for a FAR ``N`` times smaller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..encoders.base import same_encoder
from ..keys import KeyLike, key_id, load_key
from .config import DeploymentConfig
from .gallery import ProtectedGallery, unit_rows


@dataclass(frozen=True)
class Decision:
    """One answer: ``accept`` (verify: the probe is the claimed person; identify: someone was
    found), ``identity`` (the claimed or found person's label; None when identify finds nobody),
    ``enrolment_id`` of the best template, and its ``score`` against ``threshold``."""

    accept: bool
    identity: str | None
    enrolment_id: int | None
    score: float
    threshold: float


class Matcher:
    """Decisions against ``gallery`` at ``config``'s threshold, with ``key`` (the gallery's key
    file or bytes; needed when the gallery's transform is keyed).

    Raises ValueError on construction when the key is not the gallery's, the gallery was
    protected otherwise than ``config`` says, or its dimension differs from the configuration's
    encoder."""

    def __init__(self, gallery: ProtectedGallery, config: DeploymentConfig, key: KeyLike | None = None) -> None:
        self.gallery, self.config = gallery, config
        config.check_gallery(gallery.record, gallery.where)
        transform = gallery.record["protection"]["transform"]
        self._q: np.ndarray | None = None
        self._shards: Any = None  # ShardKeys for a gallery under shard keys
        self._sorted: tuple[Any, np.ndarray, np.ndarray] | None = None  # its records by shard (identify)
        secret = load_key(key) if key is not None else None
        if transform["name"] in ("rotation", "shard-rotation"):
            if secret is None:
                raise ValueError(
                    f"{gallery.where} is stored under the keyed rotation of key {transform['key_id']}: "
                    "the matcher needs "
                    "that key to transform probes (--key-file)"
                )
            if key_id(secret) != transform["key_id"]:
                raise ValueError(
                    f"the given key (id {key_id(secret)}) is not the key of {gallery.where} "
                    f"(id {transform['key_id']}): "
                    "its probes would match nobody"
                )
            if transform["name"] == "shard-rotation":
                from ..keymodes import ShardKeys

                self._shards = ShardKeys(secret, int(transform["shards"]))
            else:
                from ..rotation import keyed_rotation

                self._q = keyed_rotation(secret, gallery.dim).numpy().astype(np.float32)
        elif transform["name"] != "none":
            raise ValueError(f"{gallery.where}: unknown transform {transform['name']!r} (a newer advface_fast?)")

    def transform(self, probes: Any, encoder: dict[str, Any] | None = None) -> np.ndarray:
        """Probes ``(P, D)`` or ``(D,)`` (any scale) -> unit probes in the gallery's space,
        ``(P, D)`` float32. ``encoder``: the probe's encoder fingerprint, when known (refused if it
        is not the gallery's). Under shard keys the space depends on the shard: the probes are
        returned unrotated, and :meth:`verify` / :meth:`identify` rotate them per shard."""
        if not same_encoder(encoder, self.gallery.record.get("encoder")):
            g = self.gallery.record["encoder"]
            raise ValueError(
                f"the probe comes from encoder {encoder.get('name')!r} (weights {encoder.get('weights')}), the gallery "
                f"{self.gallery.where} from {g.get('name')!r} (weights {g.get('weights')}): they cannot be compared"
            )
        p = unit_rows(probes, "the probe")
        if p.shape[1] != self.gallery.dim:
            raise ValueError(f"the probe is {p.shape[1]}-d, the gallery {self.gallery.where} {self.gallery.dim}-d")
        return p @ self._q.T if self._q is not None else p

    def verify(self, probe: Any, claim: str | int, encoder: dict[str, Any] | None = None) -> Decision:
        """Is ``probe`` (one template, ``(D,)``) the person enrolled as ``claim`` (a label or an
        enrolment id)? The best score over that person's templates decides."""
        p = self.transform(probe, encoder)
        if len(p) != 1:
            raise ValueError(f"verify takes one probe, got {len(p)}")
        ids = self.gallery.ids_of(claim)
        s = self._scores(p[0], ids)
        best = int(np.argmax(s))
        thr = self.config.threshold
        return Decision(bool(s[best] > thr), self.gallery.label(ids[best]), int(ids[best]), float(s[best]), thr)

    def identify(self, probes: Any, encoder: dict[str, Any] | None = None) -> list[Decision]:
        """Who is each probe ``(P, D)``? The best template's person when its score passes the
        threshold, else nobody (``accept=False``, ``identity=None``)."""
        p = self.transform(probes, encoder)
        scores, ids = self._search(p) if self._shards is not None else self.gallery.search(p, 1)
        thr = self.config.threshold
        out = []
        for s, i in zip(scores[:, 0].tolist(), ids[:, 0].tolist(), strict=True):
            ok = i >= 0 and s > thr
            out.append(Decision(ok, self.gallery.label(i) if ok else None, int(i) if ok else None, float(s), thr))
        return out

    def _scores(self, probe: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Scores of one transformed probe ``(D,)`` against the templates of ``ids``; under shard
        keys the probe is rotated for each template's shard."""
        if self._shards is None:
            return self.gallery.scores(probe, ids)
        groups = self._shards.groups(ids)
        out = np.empty(len(ids), dtype=np.float32)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            q = self._shards.rotation(int(g), self.gallery.dim, torch.float32).numpy()
            out[rows] = self.gallery.scores(q @ probe, ids[rows])
        return out

    def _search(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top-1 ``(P, 1)`` scores and enrolment ids under shard keys: every probe rotated once per
        shard (:func:`~advface_fast.keymodes.sharded_search`) over the gallery's stored vectors,
        held once in shard order (a copy of the gallery in memory; made again after enrolments)."""
        from ..keymodes import sharded_search

        if self._sorted is None or len(self._sorted[2]) != len(self.gallery):
            records, ids = self.gallery.stored()
            groups = self._shards.groups(ids)
            order = np.argsort(groups, kind="stable")  # each shard contiguous: scored in place
            self._sorted = (torch.from_numpy(np.ascontiguousarray(records[order], dtype=np.float32)), groups[order],
                            ids[order])  # fmt: skip
        rec, groups, sorted_ids = self._sorted
        s, rows = sharded_search(self._shards, rec, groups, torch.from_numpy(probes.astype(np.float32)), k=1)
        return s.numpy(), sorted_ids[rows.numpy()]
