"""Face alignment of photo files with a disk cache: YuNet's five landmarks, a similarity transform
to the ArcFace 112x112 template (:func:`advface_fast.faces.yunet.align_face`).

Every file gets a crop and a status; nothing is dropped silently:

- ``detected``: YuNet found a face at the score threshold (the central one with ``pick="center"``,
  for datasets such as LFW whose labelled person is centred; the largest with ``pick="largest"``);
- ``retried``: found only at the lower ``retry_threshold``;
- ``fallback``: no face at all; the crop uses the mean landmarks (relative to the image size) of
  the files detected in the same call, which for a centred dataset is a good centre crop. Callers
  decide whether such crops count (the LFW protocol keeps them, as every pair must be scored;
  training sets drop them) and report how many there were;
- ``as-is``: ``detector="none"``, for collections that are aligned already (or synthetic): the
  whole image resized to 112x112.

Photos are read as they are shown (their EXIF orientation applied). YuNet finds faces of a limited
range of sizes, so a photo whose long side exceeds ``detect_side`` is searched at that size (a
face that fills a 4000-pixel portrait is otherwise missed, and the search takes seconds) and cut
from the full-resolution image. Files that cannot be decoded stop the call with
:class:`~advface_fast.errors.ImageReadError` naming all of them, after one pass over the rest.

The cache key hashes the files' contents (not their times: a restored timestamp cannot hide an
edit), the settings and the detector file, so any change recomputes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.cache import default_cache_dir, files_key, sha256_file

STATUSES = ("detected", "retried", "fallback", "as-is")
CACHE_VERSION = "2"  # 2: EXIF orientation, detection at most detect_side wide


@dataclass(frozen=True)
class AlignedFaces:
    """``faces (N, 112, 112, 3) uint8`` RGB crops, ``status (N,) int8`` (index into
    :data:`STATUSES`), ``landmarks (N, 5, 2) float32`` in the source image."""

    faces: np.ndarray
    status: np.ndarray
    landmarks: np.ndarray

    def counts(self) -> dict[str, int]:
        return {s: int((self.status == k).sum()) for k, s in enumerate(STATUSES)}

    def ok(self) -> np.ndarray:
        """Rows whose face was found by the detector (at either threshold) or taken as is."""
        return self.status != STATUSES.index("fallback")


def _pick(faces: np.ndarray, shape: tuple[int, int], pick: str) -> np.ndarray:
    if pick == "largest":
        return faces[np.argmax(faces[:, 2] * faces[:, 3])]
    centre = np.array([shape[1] / 2, shape[0] / 2])
    box_centre = faces[:, 0:2] + faces[:, 2:4] / 2
    return faces[np.argmin(((box_centre - centre) ** 2).sum(1))]


def _read_rgb(path: Path, max_pixels: int) -> np.ndarray:
    """The RGB pixels of ``path`` as displayed (EXIF orientation applied); the pixel bound is
    checked on the header, before anything is decoded."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if img.width * img.height > max_pixels:
            raise ValueError(f"{img.width}x{img.height} exceeds the {max_pixels}-pixel bound")
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16"):  # 16-bit greyscale: keep the high byte, not a clipped 0-255
            img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _read_or_error(path: Path, max_pixels: int) -> np.ndarray | str:
    """:func:`_read_rgb`, or the reason ``path`` cannot be read."""
    from PIL import UnidentifiedImageError

    try:
        return _read_rgb(path, max_pixels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:  # PIL raises all four
        return f"{type(e).__name__}: {e}"


def _unreadable(files: Sequence[Path], reasons: Sequence[str | None]) -> None:
    """Raise :class:`ImageReadError` naming the files whose reason is not None."""
    from ..errors import ImageReadError

    bad = [(f, r) for f, r in zip(files, reasons, strict=True) if r is not None]
    if bad:
        shown = "; ".join(f"{f} ({r})" for f, r in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ImageReadError(
            f"{len(bad)} of {len(files)} image files cannot be read: {shown}{more}. Remove or replace them."
        )


def _detect(img: np.ndarray, thr: float, detect_side: int) -> np.ndarray:
    """YuNet detections of ``img`` searched at most ``detect_side`` pixels wide, in ``img``'s
    coordinates."""
    from .yunet import detect_faces

    side = max(img.shape[:2])
    if side <= detect_side:
        return detect_faces(img, thr)
    from ..optional import import_optional

    cv2 = import_optional("cv2", "YuNet face detection")
    s = detect_side / side
    small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    det = detect_faces(small, thr).copy()
    det[:, :14] /= s  # boxes and landmarks back to full resolution; the score stays
    return det


def _detect_one(
    args: tuple[str, float, float, str, int, int],
) -> tuple[np.ndarray | None, int, tuple[int, int], Any, str | None]:
    """``(landmarks or None, status, image shape, aligned crop or None, why unreadable or None)``
    of one file: the crop is cut here, from the image already decoded; only fallbacks are warped
    later (they need the mean landmarks of the whole call)."""
    from .yunet import align_face

    path, thr, retry, pick, max_pixels, detect_side = args
    img = _read_or_error(Path(path), max_pixels)
    if isinstance(img, str):
        return None, 2, (1, 1), None, img
    for status, t in ((0, thr), (1, retry)):
        det = _detect(img, t, detect_side)
        if len(det):
            lm = _pick(det, img.shape[:2], pick)[4:14].reshape(5, 2).astype(np.float32)
            return lm, status, img.shape[:2], align_face(img, lm), None
    return None, 2, img.shape[:2], None, None


def align_files(
    files: Sequence[str | os.PathLike[str]],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    score_threshold: float = 0.6,
    retry_threshold: float = 0.3,
    pick: str = "center",
    detector: str = "yunet",
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = 120_000_000,
    detect_side: int = 1024,
    desc: str = "aligning faces",
) -> AlignedFaces:
    """Detect, pick and align one face per file (see the module docstring); cached under
    ``cache_dir`` (default :func:`default_cache_dir`; ``cache_dir=False``-ish ``""`` disables).
    ``max_pixels`` bounds a file's pixel count (read from its header before decoding);
    ``detect_side`` is the largest side YuNet searches at. Raises
    :class:`~advface_fast.errors.ImageReadError` naming every file that cannot be decoded."""
    from tqdm.auto import tqdm

    from .yunet import align_face, yunet_model_path

    if pick not in ("center", "largest"):
        raise ValueError(f"pick must be 'center' or 'largest', got {pick!r}")
    if detector not in ("yunet", "none"):
        raise ValueError(f"detector must be 'yunet' or 'none', got {detector!r}")
    if detect_side < 64:
        raise ValueError(f"detect_side must be >= 64 pixels, got {detect_side}")
    if not files:
        raise ValueError("no image files to align")
    files = [Path(f) for f in files]
    settings = {
        "v": CACHE_VERSION,
        "thr": score_threshold,
        "retry": retry_threshold,
        "pick": pick,
        "detect_side": detect_side,
        "detector": sha256_file(yunet_model_path()) if detector == "yunet" else "none",
    }
    cache = None
    if cache_dir != "":
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache = cache_root / "aligned" / f"{files_key(files, settings)}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return AlignedFaces(z["faces"], z["status"], z["landmarks"])
    if detector == "none":
        out = _as_is(files, max_pixels, progress)
        _save(cache, out)
        return out
    jobs = [(str(f), score_threshold, retry_threshold, pick, max_pixels, detect_side) for f in files]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor  # OpenCV and Pillow release the GIL

        with ThreadPoolExecutor(workers) as pool:
            found = list(tqdm(pool.map(_detect_one, jobs), total=len(jobs), desc=desc, disable=not progress))
    else:
        found = [_detect_one(j) for j in tqdm(jobs, desc=desc, disable=not progress)]
    _unreadable(files, [why for *_, why in found])
    status = np.array([s for _, s, _, _, _ in found], dtype=np.int8)
    rel = [lm / np.array([shape[1], shape[0]], np.float32) for lm, _, shape, _, _ in found if lm is not None]
    mean_rel = (
        np.mean(rel, axis=0)
        if rel
        else np.array([[0.38, 0.45], [0.62, 0.45], [0.5, 0.58], [0.41, 0.72], [0.59, 0.72]], np.float32)
    )
    landmarks = np.stack(
        [
            lm if lm is not None else mean_rel * np.array([shape[1], shape[0]], np.float32)
            for lm, _, shape, _, _ in found
        ]
    ).astype(np.float32)
    faces = np.stack(
        [
            crop if crop is not None else align_face(_read_rgb(f, max_pixels), lm)  # fallbacks: a second read
            for f, lm, (_, _, _, crop, _) in zip(files, landmarks, found, strict=True)
        ]
    )
    out = AlignedFaces(faces, status, landmarks)
    _save(cache, out)
    return out


def _as_is(files: list[Path], max_pixels: int, progress: bool) -> AlignedFaces:
    from PIL import Image
    from tqdm.auto import tqdm

    read = [_read_or_error(f, max_pixels) for f in tqdm(files, desc="reading faces", disable=not progress)]
    _unreadable(files, [r if isinstance(r, str) else None for r in read])
    faces = [np.asarray(Image.fromarray(img).resize((112, 112), Image.BILINEAR), dtype=np.uint8) for img in read]
    n = len(files)
    return AlignedFaces(np.stack(faces), np.full(n, STATUSES.index("as-is"), np.int8), np.zeros((n, 5, 2), np.float32))


def _save(cache: Path | None, out: AlignedFaces) -> None:
    if cache is None:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, faces=out.faces, status=out.status, landmarks=out.landmarks)
    os.replace(tmp, cache)
