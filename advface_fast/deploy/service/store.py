"""The gallery a service matches against and enrols into.

A FAISS index file (``advface-fast index``, or created empty by the service) is writable: each
enrolment is appended to a journal beside it (``<index>.journal``, JSON lines of id, label and
protected template, flushed to disk before the enrolment is answered) and added to the index in
memory; :meth:`GalleryStore.checkpoint` (at a clean shutdown, and every ``checkpoint_every``
enrolments) writes the index and its provenance atomically and empties the journal. A start replays
the journal, so an enrolment that was answered survives a crash. ``.npy`` galleries are served
read-only (enrol into them with ``protect``).

A PostgreSQL table (``postgresql://...#table[:column]``) whose ``protect-table`` run has finished
is enrolled into with :func:`~advface_fast.deploy.postgres_table.enrol_protected`: the protected
rows and the state's high-water mark in one transaction (refused while clear rows wait above the
mark, or while a ``protect-table`` run holds the column).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ... import provenance
from ...io.arrays import unit_rows
from ...match.gallery import FaissGallery, ProtectedGallery, open_gallery


class ReadOnlyGallery(Exception):
    """Enrolment into a gallery the service cannot write."""


class GalleryStore:
    """``source``: a FAISS index path (created from ``new_record`` when absent), a ``.npy``
    gallery or ``postgresql://...#table``; ``new_record``: the provenance of an empty gallery."""

    def __init__(self, source: str, new_record: dict[str, Any] | None, checkpoint_every: int = 10_000) -> None:
        self.source, self.checkpoint_every, self._since = source, checkpoint_every, 0
        path = Path(source)
        self.postgres = source.startswith(("postgresql://", "postgres://"))
        self.index = not self.postgres and path.suffix != ".npy"  # a FAISS index file, journaled
        self.writable = self.postgres or self.index
        self.journal = Path(source + ".journal")
        if self.index and not path.exists():
            if new_record is None:
                raise FileNotFoundError(f"no gallery at {path}")
            self.gallery: ProtectedGallery = self._empty(path, new_record)
            self.checkpoint()
        else:
            self.gallery = open_gallery(source)
        if self.index:
            if not isinstance(self.gallery, FaissGallery):
                raise ValueError(f"{source}: the service enrols into FAISS index files only")
            self._replay()

    @staticmethod
    def _empty(path: Path, record: dict[str, Any]) -> FaissGallery:
        from ...optional import import_optional

        faiss = import_optional("faiss", "the service's gallery")
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(int(record["dim"])))
        return FaissGallery(index, {**record, "rows": 0, "labels": {}, "index": {"factory": "Flat"}}, str(path))

    def _replay(self) -> None:
        if not self.journal.exists():
            return
        ids, rows, labels = [], [], []
        with open(self.journal, encoding="utf-8") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash was never answered
                    continue
                if not self.gallery.has_id(e["id"]):
                    ids.append(e["id"])
                    rows.append(e["t"])
                    labels.append(e["label"])
        if ids:
            self.gallery.add(np.array(ids, np.int64), np.array(rows, np.float32), labels)

    def add(self, ids: np.ndarray, protected: np.ndarray, labels: list[str]) -> None:
        """Enrol ``protected (n, D)`` float32 (the Protector's output) under ``ids`` with ``labels``:
        a PostgreSQL column stores them as they are (as ``protect-table`` does), an index and the
        in-memory gallery their unit directions."""
        if not self.writable:
            raise ReadOnlyGallery(
                f"{self.gallery.where} is served read-only: enrol with advface-fast protect / protect-table, "
                "or serve a FAISS index"
            )
        templates = unit_rows(protected, "the protected templates")
        self.gallery.check_new(ids, templates, labels)
        if self.postgres:
            from ...match.gallery import parse_table_url
            from ..postgres_table import enrol_protected

            dsn, table, column = parse_table_url(self.source)
            enrol_protected(dsn, table, ids, np.asarray(protected, np.float32), labels, column=column)
            self.gallery.add(ids, templates, labels)
            return
        lines = "".join(
            json.dumps({"id": int(i), "label": lab, "t": [float(v) for v in t]}, separators=(",", ":")) + "\n"
            for i, lab, t in zip(ids.tolist(), labels, templates, strict=True)
        )
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.gallery.add(ids, templates, labels)
        self._since += len(ids)
        if self._since >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write the index and its provenance (atomically), then empty the journal."""
        if not self.index:
            return
        from ...io.atomic import atomic_path
        from ..vector_index import save_index

        assert isinstance(self.gallery, FaissGallery)
        path = Path(self.source)
        # the provenance first: its labels of ids the index does not hold yet are ignored on
        # reading, and a crash before the index is written replays the journal onto the old index
        provenance.write(path, self.gallery.record)
        with atomic_path(path) as tmp:
            save_index(self.gallery.index, tmp)
        if self.journal.exists():
            os.truncate(self.journal, 0)
        self._since = 0
