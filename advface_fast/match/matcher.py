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

from ..encoders.base import same_encoder
from ..keymodes import KeyedTransform
from ..keys import KeyLike, load_key
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
        secret = load_key(key) if key is not None else None
        self.keyed = KeyedTransform.from_entry(gallery.record["protection"]["transform"], secret, gallery.where)

    def transform(self, probes: Any, encoder: dict[str, Any] | None = None) -> np.ndarray:
        """Probes ``(P, D)`` or ``(D,)`` (any scale) -> unit probes in the gallery's space,
        ``(P, D)`` float32. ``encoder``: the probe's encoder fingerprint, when known (refused if it
        is not the gallery's). Under shard keys the space depends on the shard: the probes are
        returned unrotated, and :meth:`verify` / :meth:`identify` rotate them per shard
        (:class:`~advface_fast.keymodes.KeyedTransform`)."""
        if not same_encoder(encoder, self.gallery.record.get("encoder")):
            g = self.gallery.record["encoder"]
            raise ValueError(
                f"the probe comes from encoder {encoder.get('name')!r} (weights {encoder.get('weights')}), the gallery "
                f"{self.gallery.where} from {g.get('name')!r} (weights {g.get('weights')}): they cannot be compared"
            )
        p = unit_rows(probes, "the probe")
        if p.shape[1] != self.gallery.dim:
            raise ValueError(f"the probe is {p.shape[1]}-d, the gallery {self.gallery.where} {self.gallery.dim}-d")
        return self.keyed.probes(p)

    def verify(self, probe: Any, claim: str | int, encoder: dict[str, Any] | None = None) -> Decision:
        """Is ``probe`` (one template, ``(D,)``) the person enrolled as ``claim`` (a label or an
        enrolment id)? The best score over that person's templates decides."""
        p = self.transform(probe, encoder)
        if len(p) != 1:
            raise ValueError(f"verify takes one probe, got {len(p)}")
        ids = self.gallery.ids_of(claim)
        s = self.keyed.scores(self.gallery, p[0], ids)
        best = int(np.argmax(s))
        thr = self.config.threshold
        return Decision(bool(s[best] > thr), self.gallery.label(ids[best]), int(ids[best]), float(s[best]), thr)

    def identify(self, probes: Any, encoder: dict[str, Any] | None = None) -> list[Decision]:
        """Who is each probe ``(P, D)``? The best template's person when its score passes the
        threshold, else nobody (``accept=False``, ``identity=None``)."""
        p = self.transform(probes, encoder)
        scores, ids = self.keyed.search(self.gallery, p, 1)
        thr = self.config.threshold
        out = []
        for s, i in zip(scores[:, 0].tolist(), ids[:, 0].tolist(), strict=True):
            ok = i >= 0 and s > thr
            out.append(Decision(ok, self.gallery.label(i) if ok else None, int(i) if ok else None, float(s), thr))
        return out
