"""Protect a gallery into a FAISS index: the stored vectors are the protected templates.

Cosine similarity is the matcher of unit-norm face templates, so the index holds L2-normalised
protected rows in an inner-product index (``faiss.METRIC_INNER_PRODUCT``): a search score is the
cosine of the probe (normalise it too; rotate it first when the gallery was protected with
``rotate=True``) to each protected template. The index is built from a factory string
(``"Flat"``: exact; ``"HNSW32"``: approximate graph; ``"IVF1024,Flat"``: trained on the first
chunk of protected rows) wrapped in an id map, so search returns the gallery's own ids.

The features are read and protected ``chunk_rows`` at a time (a ``.npy`` path is memory-mapped),
so the memory is the index's plus one chunk.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..io.arrays import unit_rows
from ..optional import import_optional
from ..protector import Protector


def _faiss():
    return import_optional("faiss", "FAISS indexes")


_FACTORY = re.compile(r"^(?:Flat|HNSW(?P<m>\d{1,4})(?:,Flat)?|IVF(?P<nlist>\d{1,7}),(?:Flat|SQ8|PQ(?P<pq>\d{1,4})))$")
FACTORIES = "Flat, HNSW<M> (M 2..512), IVF<nlist>,Flat | IVF<nlist>,SQ8 | IVF<nlist>,PQ<m> (m divides D)"


def check_factory(factory: str, rows: int, dim: int) -> None:
    """Refuse a factory string outside the supported family, or with parameters FAISS would abort
    on, segfault on, or turn into a useless index (``HNSW0``, ``IVF0``, an IVF with more lists
    than rows to train on, ``PQ`` not dividing ``D``)."""
    m = _FACTORY.match(factory) if isinstance(factory, str) else None
    if m is None:
        raise ValueError(f"unsupported FAISS factory {factory!r}; supported: {FACTORIES}")
    if m["m"] is not None and not 2 <= int(m["m"]) <= 512:
        raise ValueError(f"{factory}: HNSW needs M in 2..512 neighbours, got {m['m']}")
    if m["nlist"] is not None:
        nlist = int(m["nlist"])
        if not 1 <= nlist <= rows:
            raise ValueError(f"{factory}: IVF needs 1..{rows} lists for {rows} rows to train on, got {nlist}")
    if m["pq"] is not None and (int(m["pq"]) < 1 or dim % int(m["pq"])):
        raise ValueError(f"{factory}: PQ{m['pq']} must divide the dimension {dim}")


def protect_into_faiss(
    features: Any,
    protector: Protector,
    *,
    ids: Any = None,
    factory: str = "Flat",
    index: Any = None,
    chunk_rows: int = 65_536,
    progress: bool = True,
) -> Any:
    """Protect ``features`` and add them to a FAISS inner-product index under their ids.

    Args:
        features: ``(N, D)`` float array or ``.npy`` path (memory-mapped).
        protector: the :class:`~advface_fast.Protector`; ``ids`` key its random start
            (``row_ids``), so the index holds exactly ``protect(features, row_ids=ids)``
            normalised.
        ids: ``(N,)`` non-negative int64 gallery ids (default ``0..N-1``).
        factory: FAISS index factory string for a new index (default exact ``"Flat"``).
        index: add to this existing index (an ``IndexIDMap``/``IndexIDMap2`` over inner product)
            instead of building one.
        chunk_rows: rows read, protected and added at a time.
        progress: a progress bar.

    Returns:
        the index (``faiss.IndexIDMap2`` when built here): ``index.search(unit_probes, k)``
        returns cosine scores and gallery ids.
    """
    faiss = _faiss()
    feats = np.load(features, mmap_mode="r") if isinstance(features, (str, os.PathLike)) else features
    if getattr(feats, "ndim", None) != 2:
        raise ValueError(f"features must be (N, D), got shape {getattr(feats, 'shape', None)}")
    n, d = feats.shape
    if n == 0:
        raise ValueError("the gallery is empty: an index of no templates would answer every search with nobody")
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be {n} integers, got shape {ids.shape} dtype {ids.dtype}")
    if len(np.unique(ids)) != n:
        raise ValueError("ids must be unique: a search result names one gallery entry")
    ids = ids.astype(np.int64)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if index is None:
        check_factory(factory, min(n, chunk_rows), int(d))  # IVF/PQ train on the first chunk
        inner = faiss.index_factory(int(d), factory, faiss.METRIC_INNER_PRODUCT)
        index = faiss.IndexIDMap2(inner)
    elif index.d != d:
        raise ValueError(f"the index holds {index.d}-d vectors, the features are {d}-d")
    with tqdm(total=n, unit="row", desc="protect+index", disable=not progress, dynamic_ncols=True) as bar:
        for a in range(0, n, chunk_rows):
            b = min(a + chunk_rows, n)
            safe = unit_rows(protector(np.asarray(feats[a:b]), row_ids=ids[a:b]), "protected templates")
            if not index.is_trained:  # IVF / PQ: trained on the first protected chunk
                index.train(safe)
            index.add_with_ids(safe, ids[a:b])
            bar.update(b - a)
    return index


def stored_vectors(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (N, D) float32, ids (N,) int64)`` held by an id-mapped index (for re-keying:
    Flat and HNSW indexes keep their vectors; IVF ones get a direct map first)."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else None
    if inner is None:
        raise ValueError("expected an id-mapped index (advface-fast index writes one)")
    with contextlib.suppress(RuntimeError):  # IVF: vectors by list position need the direct map
        faiss.extract_index_ivf(inner).make_direct_map()
    try:
        vectors = inner.reconstruct_n(0, int(inner.ntotal))
    except RuntimeError as exc:
        raise ValueError(f"this index does not keep its vectors ({exc}); rebuild it from the protected .npy") from exc
    return np.asarray(vectors, dtype=np.float32), faiss.vector_to_array(index.id_map).astype(np.int64)


def build_index(vectors: np.ndarray, ids: np.ndarray, factory: str = "Flat") -> Any:
    """An ``IndexIDMap2`` over an inner-product ``factory`` index holding ``vectors`` under ``ids``
    (trained on them first when the factory needs it)."""
    faiss = _faiss()
    check_factory(factory, len(vectors), int(vectors.shape[1]))
    index = faiss.IndexIDMap2(faiss.index_factory(int(vectors.shape[1]), factory, faiss.METRIC_INNER_PRODUCT))
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if not index.is_trained:
        index.train(v)
    index.add_with_ids(v, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def search(index: Any, probes: Any, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and ids ``(P, k)`` of the ``k`` best gallery entries for each probe ``(P, D)``
    (normalised here). Rotate probes first (:func:`advface_fast.rotation.rotate`) for a rotated gallery."""
    return index.search(unit_rows(probes, "the probes"), k)


def save_index(index: Any, path: str | os.PathLike[str]) -> None:
    """Write ``index`` with ``faiss.write_index`` (FAISS's own format, no pickle)."""
    _faiss().write_index(index, os.fspath(path))


def load_index(path: str | os.PathLike[str]) -> Any:
    """Read an index written by :func:`save_index`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no index file {path}")
    return _faiss().read_index(os.fspath(path))
