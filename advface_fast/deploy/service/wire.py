"""What the service checks in every template it is sent, and its bulk binary bodies.

JSON bodies are parsed and typed by FastAPI (:mod:`.schemas`); what the framework cannot know is
checked here, for JSON and binary bodies alike (:func:`check_rows`): the dimension, finite values
inside float32's range, no all-zero row (no direction to protect), norms up to :data:`MAX_NORM`,
at most ``max_rows`` templates, ids in ``0..2**63-1``.

The bulk body (``application/x-npz``, :func:`read_npz` / :func:`write_npz`) is an uncompressed
``.npz`` archive (``numpy.savez``) of ``templates`` float32 ``(N, D)`` and optional ``ids`` int64
``(N,)`` and ``labels`` (unicode ``(N,)``), read with ``allow_pickle=False``; each member's
declared size is checked against the body before numpy allocates it, and compressed members are
refused (a few KB could declare gigabytes). Every problem raises :class:`RequestError` with the
HTTP status to answer and a message naming it.
"""

from __future__ import annotations

import io
import secrets
import struct
import zipfile

import numpy as np

NPZ_TYPE = "application/x-npz"
MAX_ID = (1 << 63) - 1
MAX_NORM = 1e30  # far above any encoder's templates, far below float32's 3.4e38
MAX_LABEL_CHARS = 256
# what zipfile and numpy raise on a malformed archive (NotImplementedError: an unknown zip version or
# compression; RuntimeError: an encrypted member)
_ZIP_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError, EOFError, struct.error)


class RequestError(Exception):
    """A request the service refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_rows(values: object, dim: int, max_rows: int) -> np.ndarray:
    """Templates as float32 ``(N, D)``; ``values`` a ``(D,)`` or ``(N, D)`` array or nested list."""
    try:
        rows = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(400, f"templates must be rows of numbers of equal length ({exc})") from None
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise RequestError(400, f"templates must be (N, D) or (D,), got shape {rows.shape}")
    n, d = rows.shape
    if n > max_rows:
        raise RequestError(413, f"{n} templates in one request; the limit is {max_rows}")
    if d != dim:
        raise RequestError(400, f"templates have dimension {d}; this service works on {dim}-d templates")
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise RequestError(400, f"template {bad} holds NaN or infinite values")
    if np.abs(rows).max() > np.finfo(np.float32).max:
        raise RequestError(400, "a template value is out of float32 range")
    norms = np.linalg.norm(rows, axis=1)
    if (norms == 0).any():
        raise RequestError(
            400, f"template {int(np.flatnonzero(norms == 0)[0])} is all zeros: it has no direction to protect"
        )
    if (norms > MAX_NORM).any():  # protection is on the direction; the result must fit float32 at this norm
        bad = int(np.flatnonzero(norms > MAX_NORM)[0])
        raise RequestError(400, f"template {bad} has norm {norms[bad]:.3g}; at most {MAX_NORM:g} is accepted")
    return rows.astype(np.float32)


def check_ids(values: object, n: int) -> np.ndarray:
    """``n`` enrolment ids as int64, or ``n`` fresh random 63-bit ids when ``values`` is None
    (every template then gets its own keyed random start; keep the ids to reproduce a result)."""
    if values is None:
        return np.array([secrets.randbits(63) for _ in range(n)], dtype=np.int64)
    ids = np.asarray(values)
    if ids.ndim != 1 or not (ids.dtype.kind in "iu" or (ids.dtype == object and _all_ints(ids))):
        raise RequestError(400, "ids must be a list of integers")
    if len(ids) != n:
        raise RequestError(400, f"{len(ids)} ids for {n} templates")
    if any(int(v) < 0 or int(v) > MAX_ID for v in ids.tolist()):
        raise RequestError(400, f"ids must be in 0..{MAX_ID} (they key the protection's random start)")
    if len(np.unique(ids.astype(np.int64))) != n:
        raise RequestError(400, "ids must be distinct")
    return ids.astype(np.int64)


def _all_ints(a: np.ndarray) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in a.tolist())


def check_labels(values: object, ids: np.ndarray) -> list[str]:
    """One label (the person) per template; default: the enrolment id."""
    if values is None:
        return [str(int(i)) for i in ids]
    labels = [str(v) for v in np.asarray(values).tolist()] if not isinstance(values, list) else values
    if len(labels) != len(ids):
        raise RequestError(400, f"{len(labels)} labels for {len(ids)} templates")
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip() or len(lab) > MAX_LABEL_CHARS or not lab.isprintable():
            raise RequestError(400, f"labels must be printable text of 1..{MAX_LABEL_CHARS} characters, got {lab!r}")
    return labels


def read_npz(body: bytes) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` body (``templates`` required; ``ids``, ``labels``)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(body))
        infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        raise RequestError(400, f"the body is not a readable .npz archive: {exc}") from None
    names = {i.filename.removesuffix(".npy") for i in infos}
    if "templates" not in names or names - {"templates", "ids", "labels"} or len(infos) != len(names):
        raise RequestError(400, f"the .npz body must hold templates (and optional ids, labels), got {sorted(names)}")
    out = {}
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(body):
            raise RequestError(400, f"{info.filename}: members must be stored uncompressed (numpy.savez)")
        try:
            out[info.filename.removesuffix(".npy")] = _read_npy(zf.read(info))
        except (*_ZIP_ERRORS, TypeError, SyntaxError) as exc:
            raise RequestError(400, f"{info.filename} is not a readable .npy array: {exc}") from None
    t = out["templates"]
    if t.dtype != np.dtype("<f4"):
        raise RequestError(400, f"templates must be float32, got dtype {t.dtype}")
    if "ids" in out and out["ids"].dtype.kind not in "iu":
        raise RequestError(400, f"ids must be integers, got dtype {out['ids'].dtype}")
    if "labels" in out and out["labels"].dtype.kind != "U":
        raise RequestError(400, f"labels must be a unicode array, got dtype {out['labels'].dtype}")
    return out


def _read_npy(data: bytes) -> np.ndarray:
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(buf)  # the declared size, checked before numpy allocates it
    if dtype.hasobject:
        raise ValueError("object arrays are not accepted")
    if int(np.prod(shape, dtype=object)) * dtype.itemsize > len(data) - buf.tell():
        raise ValueError(f"its header declares {shape} {dtype}, more than the body holds")
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def write_npz(**arrays: np.ndarray) -> bytes:
    """An uncompressed ``.npz`` body of ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
