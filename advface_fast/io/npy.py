"""Row-streaming reader and writer for ``.npy`` files with bounded memory.

``np.load(mmap_mode="r")`` would do for reading, but every page touched through a memory map is
counted in the process's resident set until it is unmapped, so walking a 2 GB gallery through a
map reports ~2 GB of RSS (and a written map holds dirty pages the same way). These classes use
``os.pread``/``os.pwrite`` on row ranges instead: the kernel's page cache still helps, but the
process holds one batch at a time.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tokenize
from pathlib import Path

import numpy as np

from ..errors import GalleryFormatError

FLOAT_KINDS = "f"


def _read_header_3_0(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The 3.0 header: as 2.0 (a 4-byte length) but UTF-8; parsed as a literal dict, never evaluated."""
    import ast
    import struct

    (length,) = struct.unpack("<I", f.read(4))
    if length > 1 << 20:
        raise ValueError(f"a {length}-byte .npy header")
    header = ast.literal_eval(f.read(length).decode("utf8"))
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError("the header is not a {descr, fortran_order, shape} dict")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(v, int) and v >= 0 for v in shape):
        raise ValueError(f"bad shape {shape!r}")
    return shape, bool(header["fortran_order"]), np.lib.format.descr_to_dtype(header["descr"])


_MAGIC = {
    b"PAR1": "a Parquet file",
    b"PK\x03\x04": "a zip archive (a .npz? pass one of its arrays, saved with numpy.save)",
    b"\x89HDF": "an HDF5 file",
    b"ARROW1": "an Arrow IPC file",
}


def _other_format(head: bytes) -> str | None:
    """The name of a known non-.npy format that ``head`` (a file's first bytes) starts with."""
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """``(dtype, shape, fortran_order, data offset)`` of an ``.npy`` file, or GalleryFormatError."""
    try:
        with open(path, "rb") as f:
            other = _other_format(f.read(8))
            if other is not None:
                raise GalleryFormatError(
                    f"{path} is {other}, not a .npy file: protect reads .npy galleries (numpy.save of a float "
                    "(N, D) array); protect-distributed reads folders of Parquet or .npy shards"
                )
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            elif version == (3, 0):  # 2.0 with a UTF-8 header (NumPy writes it for non-latin1 field names)
                shape, fortran, dtype = _read_header_3_0(f)
            else:
                raise GalleryFormatError(
                    f"{path}: .npy format version {version} is not supported (1.0, 2.0 and 3.0 are)"
                )
            offset = f.tell()
    except GalleryFormatError:
        raise
    except (
        ValueError,
        OSError,
        SyntaxError,
        EOFError,
        TypeError,
        MemoryError,
        UnicodeDecodeError,
        tokenize.TokenError,
        struct.error,  # a header cut inside its length field
    ) as exc:
        # garbage headers reach numpy's literal parser: tokenizer, syntax and type errors
        raise GalleryFormatError(f"{path} is not a valid .npy file ({exc})") from exc
    return dtype, tuple(int(s) for s in shape), bool(fortran), offset


class _FileHandle:
    """An OS file descriptor closed by :meth:`close` or at garbage collection."""

    _fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class NpyRowReader(_FileHandle):
    """Reads row ranges (slices of the first axis) of a C-ordered ``.npy`` file; validates it on open.

    ``shape`` ``(N, ...)`` with ``ndim`` axes (2 for a gallery ``(N, D)``, 4 for images
    ``(N, C, H, W)``), ``dtype`` the stored dtype (byte order normalised on read).
    """

    def __init__(self, path: str | os.PathLike[str], ndim: int = 2) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"gallery file not found: {self.path}")
        dtype, shape, fortran, self.offset = read_npy_header(self.path)
        if dtype.hasobject:
            raise GalleryFormatError(f"{self.path} holds Python objects; a gallery must be a float array")
        if len(shape) != ndim:
            raise GalleryFormatError(f"{self.path} holds an array of shape {shape}; expected {ndim} dimensions")
        if fortran and sum(s > 1 for s in shape) > 1:
            raise GalleryFormatError(
                f"{self.path} is stored in Fortran (column-major) order, which cannot be streamed by rows; "
                "rewrite it with np.save(path, np.ascontiguousarray(a))"
            )
        self.dtype = dtype
        self.shape = shape
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        expected = self.offset + shape[0] * self.row_bytes
        actual = self.path.stat().st_size
        if actual != expected:
            what = "truncated" if actual < expected else "longer than its header says"
            raise GalleryFormatError(
                f"{self.path} is {what}: header says {shape} {dtype} ({expected} bytes), the file has {actual}"
            )
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a new native-byte-order array ``(stop - start, ...)``."""
        n = stop - start
        buf = os.pread(self._fd, n * self.row_bytes, self.offset + start * self.row_bytes)
        if len(buf) != n * self.row_bytes:
            raise GalleryFormatError(f"{self.path}: short read at rows {start}..{stop} (file changed while reading?)")
        arr = np.frombuffer(buf, dtype=self.dtype).reshape(n, *self.shape[1:])
        return arr.astype(self.dtype.newbyteorder("="), copy=not arr.flags.writeable)


class NpyRowWriter(_FileHandle):
    """Writes row ranges into a preallocated 2-D ``.npy`` file (create, or reopen to resume)."""

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, int], dtype: np.dtype, *, create: bool) -> None:
        self.path = Path(path)
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.row_bytes = shape[1] * self.dtype.itemsize
        if create:
            header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
            # a new file, never through a link: a planted symlink or an existing file at this path is
            # removed first (unlink removes the link, not its target), and O_EXCL | O_NOFOLLOW refuses
            # anything that appears in between
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                np.lib.format.write_array_header_2_0(f, header)
                self.offset = f.tell()
                f.truncate(self.offset + shape[0] * self.row_bytes)
        else:
            if self.path.is_symlink():
                raise GalleryFormatError(
                    f"{self.path}: the partial output is a symbolic link; refusing to write through it"
                )
            dt, sh, fortran, self.offset = read_npy_header(self.path)
            if dt != self.dtype or sh != shape or fortran:
                raise GalleryFormatError(f"{self.path}: partial output is {sh} {dt}, expected {shape} {self.dtype}")
            if self.path.stat().st_size != self.offset + shape[0] * self.row_bytes:
                raise GalleryFormatError(f"{self.path}: partial output has the wrong size")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Write ``rows`` ``(n, D)`` at row ``start``."""
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        pos = self.offset + start * self.row_bytes
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, pos)
            view = view[written:]
            pos += written

    def sync(self) -> None:
        os.fsync(self._fd)
