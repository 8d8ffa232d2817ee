"""Readers of labelled face photo collections, as lists of files (pixels are read by the aligner).

- :func:`read_lfw_pairs`: LFW's ``pairs.txt`` (View 2: a header ``folds n``, then per fold ``n``
  matched lines ``name i j`` and ``n`` mismatched lines ``name1 i name2 j``), with the image files
  at ``<root>/<name>/<name>_<NNNN>.jpg``.
- :func:`read_identity_folder`: one sub-folder per identity (the layout most face datasets and
  users' own collections have); an identity's images may sit in nested folders (sessions,
  cameras), and hidden entries (``.DS_Store``, macOS ``._*`` resource forks, ``__MACOSX``,
  ``.ipynb_checkpoints``) are not images or identities.
- :func:`read_identity_file`: a flat image folder plus a ``<file> <identity>`` list (CelebA's
  ``identity_CelebA.txt`` layout).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import GalleryFormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class LabelledFiles:
    """Image files with an integer identity label each: ``files[i]`` shows ``names[labels[i]]``."""

    files: list[Path]
    labels: np.ndarray  # (N,) int64
    names: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # files that are not images, and why

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class PairProtocol:
    """A verification protocol: pair ``p`` compares ``files[first[p]]`` (the enrolled image) with
    ``files[second[p]]`` (the fresh probe); ``same[p]`` says whether they show one person and
    ``fold[p]`` which of the protocol's folds it belongs to (folds are identity-disjoint in LFW).
    ``person[k]`` names the person of ``files[k]``."""

    files: list[Path]
    person: list[str]
    first: np.ndarray  # (P,) int64 indices into files
    second: np.ndarray  # (P,) int64
    same: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,) int64

    @property
    def n_folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0


def lfw_image(root: Path, name: str, index: int) -> Path:
    return root / name / f"{name}_{index:04d}.jpg"


def read_lfw_pairs(pairs_txt: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None) -> PairProtocol:
    """Parse LFW's ``pairs.txt`` into a :class:`PairProtocol`; the images are looked up under
    ``image_root`` (default: ``lfw-deepfunneled`` beside the pairs file). Every image a pair names
    must exist; unique images are listed once."""
    pairs_txt = Path(pairs_txt)
    if not pairs_txt.is_file():
        raise FileNotFoundError(f"LFW pairs file not found: {pairs_txt}")
    root = Path(image_root) if image_root is not None else pairs_txt.parent / "lfw-deepfunneled"
    lines = [ln.split() for ln in pairs_txt.read_text().splitlines() if ln.strip()]
    try:
        folds, per = (int(v) for v in lines[0])
    except (ValueError, IndexError) as exc:
        raise GalleryFormatError(f"{pairs_txt}: the first line must be '<folds> <pairs per half-fold>'") from exc
    body = lines[1:]
    if len(body) != folds * 2 * per:
        raise GalleryFormatError(f"{pairs_txt}: expected {folds} x 2 x {per} pair lines, found {len(body)}")
    index: dict[Path, int] = {}
    files: list[Path] = []
    person: list[str] = []

    def idx(name: str, i: str, lineno: int) -> int:
        try:
            path = lfw_image(root, name, int(i))
        except ValueError as exc:
            raise GalleryFormatError(f"{pairs_txt}:{lineno}: image number {i!r} is not an integer") from exc
        if path not in index:
            index[path] = len(files)
            files.append(path)
            person.append(name)
        return index[path]

    first, second, same, fold = [], [], [], []
    for k, parts in enumerate(body):
        lineno = k + 2
        if len(parts) == 3:
            a, b, s = idx(parts[0], parts[1], lineno), idx(parts[0], parts[2], lineno), True
        elif len(parts) == 4:
            a, b, s = idx(parts[0], parts[1], lineno), idx(parts[2], parts[3], lineno), False
        else:
            raise GalleryFormatError(f"{pairs_txt}:{lineno}: expected 3 or 4 fields, got {len(parts)}")
        expect_same = (k % (2 * per)) < per
        if s != expect_same:
            raise GalleryFormatError(f"{pairs_txt}:{lineno}: a {'matched' if s else 'mismatched'} pair out of place")
        first.append(a)
        second.append(b)
        same.append(s)
        fold.append(k // (2 * per))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images named by {pairs_txt} are missing, e.g. {missing[0]}")
    return PairProtocol(files, person, np.array(first), np.array(second), np.array(same, dtype=bool), np.array(fold))


def _hidden(name: str) -> bool:
    """Entries that are never images or identities: dot files and folders, macOS archive debris."""
    return name.startswith(".") or name == "__MACOSX"


def not_an_image(path: Path) -> str | None:
    """None when ``path`` is an image: by its suffix (:data:`IMAGE_SUFFIXES`, not opened here), or,
    for any other name (``.pgm``, ``.gif``, no extension), by its content, when Pillow can open it;
    else why it is not one."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:  # reads the header only
            img.size  # noqa: B018 - touching the header is the check
        return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"not an image Pillow can read ({type(exc).__name__})"


def images_under(folder: str | os.PathLike[str], skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The image files anywhere under ``folder``, by name or by content (:func:`not_an_image`;
    sorted; hidden entries skipped; links to files followed, links to folders not, so a cycle of
    links cannot loop). Every other file is appended to ``skipped`` with the reason."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        for f in filenames:
            path = Path(dirpath) / f
            if _hidden(f) or not path.is_file():
                continue
            why = not_an_image(path)
            if why is None:
                out.append(path)
            elif skipped is not None:
                skipped.append((path, why))
    return sorted(out)


def read_identity_folder(root: str | os.PathLike[str], min_per_identity: int = 1) -> LabelledFiles:
    """Images of a folder with one sub-folder per identity (sorted), keeping identities with at
    least ``min_per_identity`` images. Images directly in ``root`` belong to no identity and are
    not read (the error says so when there is nothing else)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    files, labels, names = [], [], []
    skipped: list[tuple[Path, str]] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not _hidden(p.name)):
        imgs = images_under(d, skipped)
        if len(imgs) < min_per_identity:
            continue
        files += imgs
        labels += [len(names)] * len(imgs)
        names.append(d.name)
    if not files:
        loose = [p for p in root.iterdir() if p.is_file() and not _hidden(p.name) and not_an_image(p) is None]
        hint = f"; its {len(loose)} images directly in it belong to no identity" if loose else ""
        if skipped:
            hint += f"; {len(skipped)} files are not images, e.g. {skipped[0][0].name}: {skipped[0][1]}"
        raise GalleryFormatError(
            f"{root} holds no images in identity sub-folders (at least {min_per_identity} per identity; "
            f"any file Pillow reads){hint}"
        )
    return LabelledFiles(files, np.array(labels, dtype=np.int64), names, skipped)


def read_identity_file(
    image_dir: str | os.PathLike[str], identity_txt: str | os.PathLike[str], min_per_identity: int = 1
) -> LabelledFiles:
    """A flat image folder with a ``<file> <identity>`` line per image (CelebA's layout)."""
    image_dir, identity_txt = Path(image_dir), Path(identity_txt)
    if not identity_txt.is_file():
        raise FileNotFoundError(f"identity list not found: {identity_txt}")
    by_id: dict[str, list[Path]] = {}
    for lineno, line in enumerate(identity_txt.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise GalleryFormatError(f"{identity_txt}:{lineno}: expected '<file> <identity>', got {line!r}")
        f = image_dir / parts[0]
        if not f.is_file():
            raise FileNotFoundError(f"{identity_txt}:{lineno}: image not found: {f}")
        by_id.setdefault(parts[1], []).append(f)
    files, labels, names = [], [], []
    for ident in sorted(by_id, key=lambda s: (len(s), s)):
        if len(by_id[ident]) < min_per_identity:
            continue
        files += sorted(by_id[ident])
        labels += [len(names)] * len(by_id[ident])
        names.append(ident)
    if not files:
        raise GalleryFormatError(f"{identity_txt} lists no identity with >= {min_per_identity} images")
    return LabelledFiles(files, np.array(labels, dtype=np.int64), names)
