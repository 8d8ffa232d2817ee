"""Re-keying a protected gallery without re-enrolment (renewability).

A gallery stored under the keyed rotation holds ``Q1 z~``; re-keying stores ``Q2 Q1^T (Q1 z~) =
Q2 z~`` for the new key's rotation ``Q2``: the protected templates themselves do not change, only
the secret transform over them, so no clear template or photo is needed. Afterwards probes
transformed with the old key match nobody, and the provenance names the new key (and the old one
under ``rekeyed_from``). Under ``S`` shard keys each record moves from its old shard's rotation to
its new shard's (``Q'_{s'(i)} Q_{s(i)}^T``): the new key draws new matrices and a new partition,
so what an insider learnt of the old shards (which records share one, their pairs) says nothing
of the new ones. It does not help against whoever holds both databases and the old key: the
ids link old and new records, which gives every record's pair under the new key. The random
start's noise was keyed by the key used at protection time and stays as it was (it cannot change
without the clear templates); the provenance keeps that key's id as ``protection.key_id``.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import provenance
from ..keymodes import ShardKeys
from ..keys import KeyLike, key_id, load_key
from ..rotation import keyed_rotation

CHUNK = 1 << 16  # rows re-keyed at a time under shard keys (float64 copies of a chunk only)


def _rekeyed_record(record: dict[str, Any] | None, where: str, old: bytes, new: bytes) -> dict[str, Any]:
    if not provenance.is_protected(record):
        raise ValueError(f"{where} has no provenance of a protected gallery: nothing says which key it is under")
    transform = record["protection"]["transform"]
    if transform["name"] not in ("rotation", "shard-rotation"):
        raise ValueError(
            f"{where} is not stored under a keyed rotation (transform {transform['name']!r}): re-keying changes the "
            "rotation; protect the clear templates again with --rotate"
        )
    if transform["key_id"] != key_id(old):
        raise ValueError(f"the old key (id {key_id(old)}) is not the key of {where} (id {transform['key_id']})")
    if key_id(new) == key_id(old):
        raise ValueError("the new key is the old key")
    entry = {**transform, "key_id": key_id(new)}  # the same transform (and shard count) under the new key
    rec = {**record, "protection": {**record["protection"], "transform": entry}}
    rec["rekeyed_from"] = [
        *(record.get("rekeyed_from") or []),
        {"transform_key_id": key_id(old), "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    ]
    rec["package_version"] = provenance.package_version()
    return rec


def rekey_matrix(old: bytes, new: bytes, dim: int) -> np.ndarray:
    """``Q2 Q1^T`` as ``(dim, dim)`` float64: stored rows ``r`` become ``r (Q2 Q1^T)^T``."""
    return (keyed_rotation(new, dim) @ keyed_rotation(old, dim).T).numpy()


def rekey_rows(rows: np.ndarray, ids: np.ndarray, transform: dict[str, Any], old: bytes, new: bytes) -> np.ndarray:
    """Stored rows ``(N, D)`` under ``transform`` (a provenance entry) with ``old``, re-keyed to
    ``new`` (the same dtype), in chunks; ``ids`` ``(N,)`` int64 enrolment ids pick the shards."""
    dim = int(rows.shape[1])
    if transform["name"] == "rotation":
        m = rekey_matrix(old, new, dim)
        return (np.asarray(rows, dtype=np.float64) @ m.T).astype(rows.dtype)
    shards = int(transform["shards"])
    before, after = ShardKeys(old, shards), ShardKeys(new, shards)
    out = np.empty(rows.shape, dtype=rows.dtype)
    for a in range(0, len(rows), CHUNK):
        r = torch.from_numpy(np.asarray(rows[a : a + CHUNK], dtype=np.float64))
        i = np.asarray(ids[a : a + CHUNK], dtype=np.int64)
        z = before.invert(r, before.groups(i))
        out[a : a + CHUNK] = after.apply(z, after.groups(i)).numpy().astype(rows.dtype)
    return out


def rekey(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    old_key: KeyLike,
    new_key: KeyLike,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the gallery ``src`` (``.npy`` or a FAISS index, with provenance) re-keyed to ``out``
    with its ids and provenance. Returns the new provenance record."""
    from ..io.atomic import atomic_path, check_output

    src, dst = Path(src), check_output(out, overwrite, src)
    old, new = load_key(old_key), load_key(new_key)
    record = _rekeyed_record(provenance.read(src), str(src), old, new)
    transform = record["protection"]["transform"]
    if src.suffix == ".npy":
        z = np.load(src, mmap_mode="r", allow_pickle=False)
        has_ids = provenance.ids_path(src).is_file()
        ids = np.load(provenance.ids_path(src), allow_pickle=False) if has_ids else np.arange(len(z), dtype=np.int64)
        with atomic_path(dst, ".npy") as tmp:
            np.save(tmp, rekey_rows(z, ids, transform, old, new))
        if has_ids:
            with atomic_path(provenance.ids_path(dst), ".npy") as tmp:
                np.save(tmp, ids)
    else:
        from ..deploy.vector_index import build_index, load_index, save_index, stored_vectors

        vectors, ids = stored_vectors(load_index(src))
        factory = (record.get("index") or {}).get("factory", "Flat")
        index = build_index(rekey_rows(vectors, ids, transform, old, new).astype(np.float32), ids, factory)
        with atomic_path(dst) as tmp:
            save_index(index, tmp)
    provenance.write(dst, record)
    return record
