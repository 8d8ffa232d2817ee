"""Photos to a gallery of templates: find the photos and their people, prepare each face as the
encoder's input contract says, embed, and report every photo that gave no template.

A gallery source is one of:

- a folder with one sub-folder per person (``photos/alice/1.jpg``): the sub-folder's name is the
  person's label (photos deeper down belong to that person too);
- a flat folder of photos (``photos/alice.jpg``): the file's stem is the label;
- a list file (``.txt`` or ``.csv``): one ``path`` or ``path,label`` per line (paths relative to the
  list's folder; a missing label is the file's stem);
- a single photo.

Faces are prepared as the encoder's :class:`~advface_fast.encoders.input_spec.InputSpec` says:
``alignment="arcface-112"`` (SFace, MobileFaceNet, ArcFace-class ONNX files) detects the largest
face with YuNet and aligns it (:func:`~advface_fast.faces.align.align_files`, cached);
``alignment="none"`` takes the photo as it is. A photo where no face is found is not embedded and
is named in :attr:`EmbeddedPhotos.skipped` (never dropped silently); an unreadable photo stops the
run with :class:`~advface_fast.errors.ImageReadError` naming every such file.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.photo_sets import images_under, not_an_image
from ..errors import ImageReadError

LIST_SUFFIXES = (".txt", ".csv")


@dataclass(frozen=True)
class PhotoList:
    """Photo files and the label (person) of each."""

    files: list[Path]
    labels: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # files that are not photos, and why


@dataclass
class EmbeddedPhotos:
    """Templates of the photos that gave one: ``features (N, D) float32`` unit-norm rows,
    ``labels[i]`` and ``files[i]`` of row ``i``; ``skipped``: ``(file, reason)`` of every photo
    that gave no template."""

    features: np.ndarray
    labels: list[str]
    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def find_photos(source: str | os.PathLike[str]) -> PhotoList:
    """The photos of a gallery source and their labels (see the module docstring)."""
    src = Path(source)
    if src.is_file() and src.suffix.lower() in LIST_SUFFIXES:
        return _read_list(src)
    if src.is_file():
        why = not_an_image(src)
        if why is not None:
            raise ValueError(f"{src} is neither a photo ({why}) nor a list file (.txt, .csv)")
        return PhotoList([src], [src.stem])
    if not src.is_dir():
        raise FileNotFoundError(f"no photo folder, list file or photo at {src}")
    skipped: list[tuple[Path, str]] = []
    files = images_under(src, skipped)
    if not files:
        hint = f"; {len(skipped)} files are not images, e.g. {skipped[0][0].name}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"{src} holds no photos (any file Pillow reads){hint}")
    labels = [f.relative_to(src).parts[0] if len(f.relative_to(src).parts) > 1 else f.stem for f in files]
    return PhotoList(files, labels, skipped)


def _read_list(path: Path) -> PhotoList:
    files, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) > 2:
                raise ValueError(f"{path}:{lineno}: expected 'path' or 'path,label', got {len(row)} fields")
            p = Path(row[0].strip())
            p = p if p.is_absolute() else path.parent / p
            files.append(p)
            labels.append(row[1].strip() if len(row) == 2 and row[1].strip() else p.stem)
    if not files:
        raise ValueError(f"{path} lists no photos")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} photos listed in {path} do not exist, e.g. {missing[0]}")
    return PhotoList(files, labels)


def detector_for(encoder: object) -> str:
    """``"yunet"`` for an encoder that takes aligned faces, ``"none"`` for one that takes images
    as they are (its input contract says which)."""
    alignment = getattr(getattr(encoder, "spec", None), "alignment", "none")
    return "yunet" if alignment == "arcface-112" else "none"


def embed_photos(
    source: str | os.PathLike[str] | PhotoList,
    encoder: Any,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    batch_size: int = 32,
) -> EmbeddedPhotos:
    """Templates of the photos of ``source`` (a gallery source or a :class:`PhotoList`) by
    ``encoder`` (anything :func:`~advface_fast.encoders.loader.as_encoder` takes: ``"sface"``, a
    model file, an encoder object). Aligned crops and embeddings are cached under ``cache_dir``
    (default: :func:`~advface_fast.io.cache.default_cache_dir`; ``""``: no cache)."""
    from ..encoders.loader import as_encoder
    from .align import STATUSES, align_files
    from .embed import embed_faces

    enc = as_encoder(encoder)
    if enc is None:
        raise ValueError("embedding needs an encoder ('sface', 'mobilefacenet' or a model file)")
    photos = source if isinstance(source, PhotoList) else find_photos(source)
    aligned = align_files(
        photos.files, cache_dir=cache_dir, pick="largest", detector=detector_for(enc), progress=progress
    )
    ok = aligned.status != STATUSES.index("fallback")
    skipped = list(photos.skipped)  # files that are not images, then photos without a face
    skipped += [(f, "no face found") for f, good in zip(photos.files, ok, strict=True) if not good]
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        raise ImageReadError(f"no face was found in any of the {len(photos.files)} photos; nothing to embed")
    feats = embed_faces(
        enc, aligned.faces[rows], batch_size=batch_size, cache_dir=cache_dir, progress=progress, desc="embedding"
    ).numpy()
    norms = np.linalg.norm(feats, axis=1)
    good = np.isfinite(feats).all(1) & (norms > 0)
    skipped += [(photos.files[r], "the encoder returned a zero or non-finite template") for r in rows[~good]]
    rows, feats, norms = rows[good], feats[good], norms[good]
    return EmbeddedPhotos(
        (feats / norms[:, None]).astype(np.float32),
        [photos.labels[r] for r in rows],
        [photos.files[r] for r in rows],
        skipped,
    )


def write_templates(
    out: str | os.PathLike[str],
    embedded: EmbeddedPhotos,
    encoder: Any,
    *,
    first_id: int = 0,
    overwrite: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """Write ``out`` (``.npy``, ``(N, D) float32``), its enrolment ids ``<stem>.ids.npy``
    (``first_id ..``, int64) and its provenance sidecar (encoder, labels by id, the skipped
    photos). Returns the provenance record."""
    from .. import provenance
    from ..encoders.loader import as_encoder
    from ..io.atomic import atomic_path, check_output

    path = check_output(out, overwrite)
    if path.suffix != ".npy":
        raise ValueError(f"the templates file must be a .npy path, got {path}")
    if isinstance(first_id, bool) or not isinstance(first_id, int) or first_id < 0:
        raise ValueError(f"first_id must be a non-negative integer, got {first_id!r}")
    n, d = embedded.features.shape
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    fp = getattr(as_encoder(encoder), "fingerprint", None)
    record = provenance.new_record(
        "templates",
        n,
        d,
        fp() if callable(fp) else None,
        labels={str(i): lab for i, lab in zip(ids.tolist(), embedded.labels, strict=True)},
        source={
            "photos": source,
            "embedded": n,
            "skipped": [{"file": str(f), "reason": r} for f, r in embedded.skipped],
        },
    )
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, embedded.features)
    with atomic_path(provenance.ids_path(path), ".npy") as tmp:
        np.save(tmp, ids)
    provenance.write(path, record)
    return record
