"""Provenance: what made a template file, recorded beside it, so that nothing downstream guesses.

Every gallery the package writes gets a JSON sidecar (``<stem>.provenance.json`` beside
``<stem>.npy`` or ``<stem>.faiss``; ``provenance.json`` in a run folder; the state row of a
PostgreSQL table). It records the package version, what the file holds (clear templates from
``embed``, or protected ones), the encoder's fingerprint, and for protected data the key's id
(never the key), the keyed transform, the shadow decoder's fingerprint and the settings.
``protect`` reads its input's record to refuse protecting twice; the matcher reads the gallery's
to apply the same transform to probes, refuse a probe of another encoder or a key of another
gallery, and check that the deployment's threshold was fitted for these settings.

Row ids and labels travel beside the array: ``<stem>.ids.npy`` (int64, one per row, the
convention of the distributed pipeline's shards) and, for galleries made from photos, the
record's ``labels`` (enrolment id -> the person's name).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from .keymodes import transform_entry

FORMAT = "advface_fast.provenance/1"
KINDS = ("templates", "protected")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The provenance sidecar of a file (``a/g.npy`` -> ``a/g.provenance.json``) or run folder
    (``a/run/`` -> ``a/run/provenance.json``)."""
    p = Path(path)
    if p.is_dir():
        return p / "provenance.json"
    return p.with_name(p.stem + ".provenance.json") if p.suffix else p.with_name(p.name + ".provenance.json")


def ids_path(path: str | os.PathLike[str]) -> Path:
    """The row-id companion of a gallery file (``a/g.npy`` -> ``a/g.ids.npy``)."""
    p = Path(path)
    return p.with_name(p.stem + ".ids.npy")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("advface_fast")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "unknown"


def new_record(kind: str, rows: int, dim: int, encoder: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """A provenance record (a JSON-serialisable dict) of ``rows`` templates of ``dim`` dimensions."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "format": FORMAT,
        "kind": kind,
        "package_version": package_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": int(rows),
        "dim": int(dim),
        "encoder": encoder,
        "protection": None,
        **fields,
    }


def protection_record(settings: dict[str, Any]) -> dict[str, Any]:
    """The ``protection`` entry of a record from :meth:`Protector.settings`: key id, transform,
    decoder fingerprint and the settings."""
    key = settings.get("key")
    return {
        "key_id": key,
        "transform": transform_entry(key, bool(settings.get("rotate")), int(settings.get("shards", 1))),
        "decoder": settings.get("decoder"),
        "settings": {k: v for k, v in settings.items() if k not in ("key", "decoder", "encoder")},
    }


def write(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write ``record`` as the sidecar of ``path`` (atomically); returns the sidecar's path."""
    from .io.atomic import atomic_path

    side = sidecar_path(path)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return side


def read(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance record of ``path`` (a file, a run folder, or the sidecar itself), or None
    when it has none. A sidecar that is not a provenance record is refused."""
    p = Path(path)
    side = p if p.name.endswith("provenance.json") else sidecar_path(p)
    if not side.is_file():
        return None
    try:
        rec = json.loads(side.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{side} is not a provenance record (not JSON: {exc})") from exc
    if not isinstance(rec, dict) or rec.get("format") != FORMAT or rec.get("kind") not in KINDS:
        raise ValueError(f"{side} is not a provenance record of this package (format {FORMAT})")
    return rec


def is_protected(record: dict[str, Any] | None) -> bool:
    return bool(record and record.get("protection"))


def refuse_protected_input(path: str | os.PathLike[str] | None, allow: bool) -> dict[str, Any] | None:
    """The input's record; refuses an input that is already protected unless ``allow``
    (protecting twice moves templates twice as far and records the wrong provenance)."""
    rec = read(path) if path is not None else None
    if is_protected(rec) and not allow:
        prot = rec["protection"]
        raise ValueError(
            f"{path} is already protected (key {prot.get('key_id')}, transform {prot['transform']['name']}, "
            f"decoder {prot.get('decoder')}; see `advface-fast info {path}`): protect the clear templates, or pass "
            "--reprotect if protecting twice is really meant (use `advface-fast rekey` to change the key)"
        )
    return rec


def describe(record: dict[str, Any]) -> list[str]:
    """Human-readable lines of a record (``advface-fast info``)."""
    enc = record.get("encoder") or {}
    lines = [
        f"kind: {'protected templates' if is_protected(record) else 'clear templates (not protected)'}",
        f"rows: {record.get('rows')} x {record.get('dim')}-d",
        f"encoder: {enc.get('name', 'unknown')} (weights {enc.get('weights', '?')})" if enc else "encoder: unknown",
        f"made by: advface_fast {record.get('package_version')} on {record.get('created')}",
    ]
    prot = record.get("protection")
    if prot:
        s = prot.get("settings", {})
        lines += [
            f"key id: {prot.get('key_id') or 'none (public seed)'}",
            f"transform: {prot['transform']['name']}",
            f"shadow decoder: {prot.get('decoder')}",
            "settings: " + ", ".join(f"{k}={s[k]}" for k in sorted(s)),
        ]
    if record.get("labels"):
        lines.append(f"labels: {len(record['labels'])} enrolment ids named")
    for k in ("source", "rekeyed_from"):
        if record.get(k):
            lines.append(f"{k}: {json.dumps(record[k], sort_keys=True)}")
    return lines
