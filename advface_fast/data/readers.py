"""Readers of the face data formats users have: image folders, insightface ``.bin`` verification
sets, and ``.npy`` image arrays. Images come back as float32 ``(N, 3, H, W)`` in [-1, 1].

The ``.bin`` files are pickles. Unpickling runs whatever the file asks for, so they are read with
a restricted unpickler that builds only the plain data the format uses (lists, tuples, bytes,
bools; numpy boolean scalars, which some files use for the labels; ``_codecs.encode(str,
'latin1')``, which protocol-2 pickles from Python 3 use for bytes) and refuses any other global
with :class:`~advface_fast.errors.GalleryFormatError`.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import GalleryFormatError
from .photo_sets import read_identity_folder


def _to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1).contiguous()


MAX_PIXELS = 16_000_000  # per decoded image (a 4000 x 4000 photo); face crops are far smaller
MAX_TOTAL_BYTES = 4 * 2**30  # decoded RGB bytes per call of a reader


def decode_image(data: bytes, size: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> ``(H, W, 3)`` uint8 RGB as displayed (EXIF orientation applied; resized
    to ``size`` x ``size`` when given).
    Images declaring more than ``max_pixels`` pixels are refused before they are decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))  # lazy: reads the header only
        if img.width * img.height > max_pixels:
            raise GalleryFormatError(
                f"an image declares {img.width}x{img.height} pixels, above the bound of {max_pixels:,} "
                "(pass max_pixels= to raise it)"
            )
        img = ImageOps.exif_transpose(img).convert("RGB")  # as displayed
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise GalleryFormatError(f"cannot decode an image ({exc})") from exc
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def read_image_folder(
    root: str | os.PathLike[str], size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images of a folder with one sub-folder per identity (listed by
    :func:`~advface_fast.data.photo_sets.read_identity_folder`).

    Returns ``(images (N, 3, S, S) in [-1, 1], labels (N,) int64, identity names)``; files are taken
    in sorted order. Images of different sizes need ``size``.
    """
    listing = read_identity_folder(root)  # the folder rules of the face readers: nesting, hidden entries
    arrays = []
    for f in listing.files:
        try:
            arrays.append(decode_image(f.read_bytes(), size))
        except GalleryFormatError as exc:
            raise GalleryFormatError(f"{f}: {exc}") from exc
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise GalleryFormatError(f"{root}: images have different sizes {sorted(shapes)}; pass size=")
    return _to_tensor(arrays), torch.from_numpy(listing.labels), listing.names


def _bool_scalar(dtype: np.dtype, data: bytes = b"") -> np.bool_:
    """What numpy's pickles call to rebuild a scalar, limited to booleans."""
    if not isinstance(dtype, np.dtype) or dtype.kind != "b" or not isinstance(data, bytes):
        raise GalleryFormatError(f"refusing to unpickle a numpy scalar of dtype {dtype!r}: only booleans are expected")
    return np.frombuffer(data, dtype=dtype)[0]


def _dtype(name: str, align: bool = False, copy: bool = False) -> np.dtype:
    if name not in ("b1", "?"):
        raise GalleryFormatError(f"refusing to unpickle numpy dtype {name!r}: only booleans are expected")
    return np.dtype(name)


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call to rebuild ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise GalleryFormatError("refusing to unpickle _codecs.encode with anything but (str, 'latin1')")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # type: ignore[override]
        if module == "_codecs" and name == "encode":
            return _latin1_bytes
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return _bool_scalar
        if module == "numpy" and name == "dtype":
            return _dtype
        raise GalleryFormatError(
            f"refusing to unpickle {module}.{name}: an insightface .bin file holds only image bytes and labels"
        )


class _BoundedReader:
    """A file whose ``read(n)`` refuses ``n`` beyond what is left (a declared length is checked
    before anything of that size is allocated)."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int = -1) -> bytes:
        if n > self._size - self._f.tell():
            raise ValueError(f"a declared length of {n} bytes runs past the end of the file")
        return self._f.read(n)

    def readline(self) -> bytes:
        return self._f.readline(65536)

    def tell(self) -> int:
        return self._f.tell()


def _check_pickle_opcodes(path: Path) -> None:
    """Walk the pickle's opcodes (nothing is built) before unpickling: refuse memo indices beyond
    the number of opcodes (the unpickler grows its memo to the index: 7 bytes asked for 2.3 GB) and
    lengths beyond the file's size (``BYTEARRAY8``, ``BINBYTES8``, ``FRAME``: ``MemoryError`` or
    ``OverflowError`` before any check)."""
    import pickletools

    size = path.stat().st_size
    ops = 0
    try:
        with open(path, "rb") as raw:
            f = _BoundedReader(raw, size)
            for op, arg, _ in pickletools.genops(f):
                ops += 1
                if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
                    if not isinstance(arg, int) or arg < 0 or arg > size:
                        raise GalleryFormatError(f"{path}: pickle memo index {arg} is beyond a file of {size} bytes")
                elif op.name == "FRAME" and arg > size:
                    raise GalleryFormatError(f"{path}: pickle frame of {arg} bytes in a file of {size}")
                if op.name == "STOP":
                    return
    except GalleryFormatError:
        raise
    except (ValueError, EOFError, OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise GalleryFormatError(f"{path} is not an insightface .bin file ({type(exc).__name__}: {exc})") from exc
    raise GalleryFormatError(f"{path} is not an insightface .bin file (the pickle has no STOP after {ops} opcodes)")


def read_insightface_bin(
    path: str | os.PathLike[str],
    size: int | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> tuple[torch.Tensor, np.ndarray]:
    """An insightface verification file (LFW, CFP-FP, AgeDB-30 ``.bin``).

    Returns ``(images (2P, 3, S, S) in [-1, 1], issame (P,) bool)``: pair ``p`` is images ``2p``
    and ``2p + 1``. Each image may declare at most ``max_pixels`` pixels and all of them together
    at most ``max_total_bytes`` decoded bytes (a small file can reference one huge image many
    times); both are checked from the image headers before decoding.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".bin file not found: {path}")
    _check_pickle_opcodes(path)
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except GalleryFormatError as exc:
        raise GalleryFormatError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as exc:  # fmt: skip
        raise GalleryFormatError(f"{path} is not an insightface .bin file ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise GalleryFormatError(f"{path}: expected a pair (bins, issame_list), got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(issame, (list, tuple)):
        raise GalleryFormatError(f"{path}: the second element must be a list of booleans")
    if not bins:
        raise GalleryFormatError(f"{path}: no images")
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise GalleryFormatError(f"{path}: the first element must be a list of encoded images (bytes)")
    issame_arr = np.asarray([bool(v) for v in issame], dtype=bool)
    if len(bins) != 2 * len(issame_arr):
        raise GalleryFormatError(f"{path}: {len(bins)} images for {len(issame_arr)} pairs (expected two per pair)")
    from PIL import Image

    total = 0
    for i, b in enumerate(bins):  # headers only: the declared sizes, before any decoding
        try:
            with Image.open(io.BytesIO(bytes(b))) as img:
                w, h = img.size
        except Exception as exc:  # Pillow raises several types for garbage
            raise GalleryFormatError(f"{path}: image {i}: cannot read its header ({exc})") from exc
        if w * h > max_pixels:
            raise GalleryFormatError(
                f"{path}: image {i} declares {w}x{h} pixels, above the bound of {max_pixels:,} (max_pixels=)"
            )
        total += 3 * (w * h if size is None else max(w * h, size * size))
        if total > max_total_bytes:
            raise GalleryFormatError(
                f"{path}: the images would decode to more than {max_total_bytes:,} bytes (max_total_bytes= to raise it)"
            )
    arrays = []
    for i, b in enumerate(bins):
        try:
            arrays.append(decode_image(bytes(b), size, max_pixels))
        except GalleryFormatError as exc:
            raise GalleryFormatError(f"{path}: image {i}: {exc}") from exc
    if len({a.shape for a in arrays}) > 1:
        raise GalleryFormatError(f"{path}: images have different sizes; pass size=")
    return _to_tensor(arrays), issame_arr


def read_npy_images(path: str | os.PathLike[str]) -> torch.Tensor:
    """An ``.npy`` image array: ``(N, 3, H, W)`` float (taken as is) or ``(N, H, W, 3)`` uint8
    (converted to [-1, 1])."""
    from ..io.npy import NpyRowReader

    path = Path(path)
    reader = NpyRowReader(path, ndim=4)
    try:
        arr = reader.read(0, reader.shape[0])
    finally:
        reader.close()
    if arr.dtype == np.uint8 and arr.shape[-1] == 3:
        return _to_tensor(list(arr))
    if arr.dtype.kind == "f" and arr.shape[1] == 3:
        return torch.from_numpy(arr.astype(np.float32))
    raise GalleryFormatError(
        f"{path}: expected (N, 3, H, W) float or (N, H, W, 3) uint8 images, got {arr.shape} {arr.dtype}"
    )
