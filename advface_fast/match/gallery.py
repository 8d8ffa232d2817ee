"""A protected gallery as the matcher sees it: unit-norm protected templates under enrolment ids,
the labels (people) of those ids, and the provenance record that says how they were protected.

:func:`open_gallery` opens what the package writes: a ``.npy`` file (with ``<stem>.ids.npy`` and
its provenance sidecar), a FAISS index (``advface-fast index``, with its sidecar), or a
PostgreSQL table (``postgresql://...#table[:column]``; its state row is the provenance). A gallery
without provenance is refused: the matcher must know its transform and settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance
from ..io.arrays import unit_rows

_SEARCH_CHUNK = 262_144  # gallery rows per matrix product of a brute-force search


def _check_protected(record: dict[str, Any], where: str) -> None:
    if not provenance.is_protected(record):
        raise ValueError(
            f"{where} is not a protected gallery (its provenance says clear templates): protect it first "
            "(advface-fast protect / index) and match against the protected output"
        )


class ProtectedGallery:
    """Protected templates held in memory (``.npy``, PostgreSQL) and searched by brute force.

    Attributes:
        record: the provenance record; ``where``: the gallery's name in messages; ``dim``: D.
    """

    def __init__(self, templates: np.ndarray, ids: np.ndarray, record: dict[str, Any], where: str) -> None:
        _check_protected(record, where)
        self.templates = unit_rows(templates, f"the gallery {where}")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(self.templates),):
            raise ValueError(f"{where}: {len(ids)} ids for {len(self.templates)} templates")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{where}: enrolment ids must be unique")
        self._index_ids(record, where, int(self.templates.shape[1]), ids)

    def _index_ids(self, record: dict[str, Any], where: str, dim: int, ids: np.ndarray) -> None:
        """Hold the record and ids, with the row of each id and the ids of each label (a verify
        reads one person's templates without scanning every label)."""
        self.record, self.where, self.dim, self.ids = record, where, dim, ids
        self._row = {int(i): r for r, i in enumerate(ids.tolist())}
        self._by_label: dict[str, list[int]] = {}
        for i, lab in (record.get("labels") or {}).items():
            if int(i) in self._row:
                self._by_label.setdefault(lab, []).append(int(i))

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, templates: np.ndarray, labels: list[str]) -> None:
        """Enrol unit protected ``templates (n, D)`` under new ``ids (n,)`` with ``labels``."""
        self.check_new(ids, templates, labels)
        self.templates = np.concatenate([self.templates, templates.astype(np.float32)])
        self._note_added(ids, labels)

    def check_new(self, ids: np.ndarray, templates: np.ndarray, labels: list[str]) -> None:
        """Refuse ids already enrolled (KeyError) and shapes that do not agree (ValueError)."""
        if templates.shape != (len(ids), self.dim) or len(labels) != len(ids):
            raise ValueError(f"{len(ids)} ids, {len(labels)} labels and templates {templates.shape} do not match")
        taken = [int(i) for i in ids if int(i) in self._row]
        if taken or len(set(ids.tolist())) != len(ids):
            raise KeyError(f"enrolment ids already used in {self.where}: {(taken or ids.tolist())[:5]}")

    def _note_added(self, ids: np.ndarray, labels: list[str]) -> None:
        start = len(self.ids)
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        if not isinstance(self.record.get("labels"), dict):
            self.record["labels"] = {}
        by_id = self.record["labels"]
        for r, (i, lab) in enumerate(zip(ids.tolist(), labels, strict=True)):
            self._row[int(i)] = start + r
            if lab != str(int(i)):  # an unlabelled id is claimed by its number (ids_of)
                by_id[str(int(i))] = lab
                self._by_label.setdefault(lab, []).append(int(i))
        self.record["rows"] = len(self.ids)

    def label(self, enrolment_id: int) -> str:
        """The person of an enrolment id (its label when the gallery has labels, else the id)."""
        labels = self.record.get("labels") or {}
        return labels.get(str(int(enrolment_id)), str(int(enrolment_id)))

    def ids_of(self, claim: str | int) -> np.ndarray:
        """The enrolment ids of a claimed identity: a label (every template enrolled under it), or
        an enrolment id. Refuses a claim nobody is enrolled under."""
        hits = self._by_label.get(str(claim), [])
        if not hits and str(claim).lstrip("-").isdigit() and self.has_id(int(claim)):
            hits = [int(claim)]
        if not hits:
            raise KeyError(f"nobody is enrolled as {claim!r} in {self.where}")
        return np.array(sorted(hits), dtype=np.int64)

    def has_id(self, enrolment_id: int) -> bool:
        return int(enrolment_id) in self._row

    def search(self, probes: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cosine scores and enrolment ids ``(P, k)`` of the ``k`` best templates for unit
        ``probes (P, D)``, best first."""
        k = min(k, len(self))
        best_s = np.full((len(probes), k), -np.inf, np.float32)
        best_r = np.zeros((len(probes), k), np.int64)
        for a in range(0, len(self), _SEARCH_CHUNK):
            s = probes @ self.templates[a : a + _SEARCH_CHUNK].T
            kk = min(k, s.shape[1])
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
            cand_r = np.concatenate([best_r, top + a], 1)
            order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
            best_s, best_r = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_r, order, 1)
        return best_s, self.ids[best_r]

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored template ``(N, D)`` float32 with its enrolment id ``(N,)`` int64 (a
        search under shard keys scores each shard with its own rotation of the probe)."""
        return self.templates, self.ids

    def scores(self, probe: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine scores of one unit probe ``(D,)`` against the templates of ``ids``."""
        rows = np.array([self._row[int(i)] for i in ids])
        return self.templates[rows] @ probe


class FaissGallery(ProtectedGallery):
    """A FAISS inner-product index of protected unit templates (``advface-fast index``)."""

    def __init__(self, index: Any, record: dict[str, Any], where: str) -> None:
        _check_protected(record, where)
        self.index = index
        self._index_ids(record, where, int(index.d), self._stored_ids(index))

    @staticmethod
    def _stored_ids(index: Any) -> np.ndarray:
        from ..optional import import_optional

        faiss = import_optional("faiss", "FAISS indexes")
        return faiss.vector_to_array(index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, templates: np.ndarray, labels: list[str]) -> None:
        self.check_new(ids, templates, labels)
        self.index.add_with_ids(np.ascontiguousarray(templates, dtype=np.float32), ids.astype(np.int64))
        self._note_added(ids, labels)

    def search(self, probes: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(probes, dtype=np.float32), min(k, len(self)))

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        from ..deploy.vector_index import stored_vectors

        try:
            return stored_vectors(self.index)
        except ValueError as exc:
            raise ValueError(f"{self.where}: search under shard keys reads the stored vectors: {exc}") from exc

    def scores(self, probe: np.ndarray, ids: np.ndarray) -> np.ndarray:
        try:
            vecs = np.stack([self.index.reconstruct(int(i)) for i in ids])
        except RuntimeError as exc:
            raise ValueError(
                f"{self.where}: this index cannot return stored vectors by id for verification ({exc}); "
                "build it with a Flat or HNSW factory"
            ) from exc
        return vecs @ probe


def open_gallery(source: str | os.PathLike[str]) -> ProtectedGallery:
    """Open a protected gallery: ``.npy`` (+ ``<stem>.ids.npy``, default ids ``0..N-1``), a FAISS
    index file, or ``postgresql://...#table[:column]``; its provenance is required."""
    s = os.fspath(source)
    if s.startswith(("postgresql://", "postgres://")):
        return _postgres_gallery(s)
    path = Path(s)
    if not path.is_file():
        raise FileNotFoundError(f"no gallery at {path}")
    record = provenance.read(path)
    if record is None:
        raise ValueError(
            f"{path} has no provenance ({provenance.sidecar_path(path).name}): the matcher cannot know its key, "
            "transform and settings; galleries written by advface-fast protect / index have one"
        )
    if path.suffix == ".npy":
        z = np.load(path, mmap_mode="r", allow_pickle=False)
        idp = provenance.ids_path(path)
        ids = np.load(idp, allow_pickle=False) if idp.is_file() else np.arange(len(z), dtype=np.int64)
        return ProtectedGallery(z, ids, record, str(path))
    from ..deploy.vector_index import load_index

    return FaissGallery(load_index(path), record, str(path))


def parse_table_url(url: str) -> tuple[str, str, str]:
    """``postgresql://...#table[:column]`` -> ``(dsn, table, column)`` (column default ``embedding``)."""
    dsn, _, target = url.partition("#")
    if not target:
        raise ValueError(
            "a PostgreSQL gallery is 'postgresql://...#table' or '#table:column' (default column embedding)"
        )
    table, _, column = target.partition(":")
    return dsn, table, column or "embedding"


def _postgres_gallery(url: str) -> ProtectedGallery:
    """``postgresql://...#table[:column]``: the table's protected column in memory."""
    from ..deploy.postgres_table import read_protected_table

    dsn, table, column = parse_table_url(url)
    ids, z, record = read_protected_table(dsn, table, column)
    return ProtectedGallery(z, ids, record, f"{table}.{column}")
