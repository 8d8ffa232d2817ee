"""Re-keying a protected gallery without re-enrolment (renewability).

A gallery stored under the keyed rotation holds ``Q1 z~``; re-keying stores ``Q2 Q1^T (Q1 z~) =
Q2 z~`` for the new key's rotation ``Q2``: the protected templates themselves do not change, only
the secret transform over them, so no clear template or photo is needed. Afterwards probes
transformed with the old key match nobody, and the provenance names the new key (and the old one
under ``rekeyed_from``). The random start's noise was keyed by the key used at protection time
and stays as it was (it cannot change without the clear templates); the provenance keeps that
key's id as ``protection.key_id``.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import provenance
from ..keys import KeyLike, key_id, load_key
from ..rotation import keyed_rotation


def _rekeyed_record(record: dict[str, Any] | None, where: str, old: bytes, new: bytes) -> dict[str, Any]:
    if not provenance.is_protected(record):
        raise ValueError(f"{where} has no provenance of a protected gallery: nothing says which key it is under")
    transform = record["protection"]["transform"]
    if transform["name"] == "shard-rotation":
        raise ValueError(
            f"{where} is stored under {transform['shards']} shard keys: re-keying them is not supported yet; protect "
            "the clear templates again under the new key"
        )
    if transform["name"] != "rotation":
        raise ValueError(
            f"{where} is not stored under a keyed rotation (transform {transform['name']!r}): re-keying changes the "
            "rotation; protect the clear templates again with --rotate"
        )
    if transform["key_id"] != key_id(old):
        raise ValueError(f"the old key (id {key_id(old)}) is not the key of {where} (id {transform['key_id']})")
    if key_id(new) == key_id(old):
        raise ValueError("the new key is the old key")
    rec = {**record, "protection": {**record["protection"], "transform": {"name": "rotation", "key_id": key_id(new)}}}
    rec["rekeyed_from"] = [
        *(record.get("rekeyed_from") or []),
        {"transform_key_id": key_id(old), "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
    ]
    rec["package_version"] = provenance.package_version()
    return rec


def rekey_matrix(old: bytes, new: bytes, dim: int) -> np.ndarray:
    """``Q2 Q1^T`` as ``(dim, dim)`` float64: stored rows ``r`` become ``r (Q2 Q1^T)^T``."""
    return (keyed_rotation(new, dim) @ keyed_rotation(old, dim).T).numpy()


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
    if src.suffix == ".npy":
        z = np.load(src, mmap_mode="r", allow_pickle=False)
        m = rekey_matrix(old, new, int(z.shape[1]))
        with atomic_path(dst, ".npy") as tmp:
            np.save(tmp, (np.asarray(z, dtype=np.float64) @ m.T).astype(z.dtype))
        if provenance.ids_path(src).is_file():
            with atomic_path(provenance.ids_path(dst), ".npy") as tmp:
                np.save(tmp, np.load(provenance.ids_path(src), allow_pickle=False))
    else:
        from ..deploy.vector_index import build_index, load_index, save_index, stored_vectors

        vectors, ids = stored_vectors(load_index(src))
        m = rekey_matrix(old, new, int(vectors.shape[1])).astype(np.float64)
        factory = (record.get("index") or {}).get("factory", "Flat")
        index = build_index((vectors.astype(np.float64) @ m.T).astype(np.float32), ids, factory)
        with atomic_path(dst) as tmp:
            save_index(index, tmp)
    provenance.write(dst, record)
    return record
