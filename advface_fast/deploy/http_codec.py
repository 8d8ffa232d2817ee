"""The enrolment service's wire format: parse and check a request body, encode a response.

Two bodies carry templates (float32 rows of the decoder's dimension ``D``):

- ``application/json``: ``{"templates": [[f, ...], ...] | [f, ...], "ids": [int, ...]}``
  (``ids`` optional; one flat list is one template);
- ``application/x-npy``: a ``.npy`` file of float32 ``(N, D)`` or ``(D,)`` (read with
  ``allow_pickle=False``), ids in the header ``X-Template-Ids: 17,18,19``.

The response has the request's format: JSON ``{"templates": [[...]], "ids": [...]}`` or an
``.npy`` body with ``X-Template-Ids``. Every problem with a request raises :class:`RequestError`
with the HTTP status to answer (400 bad content, 413 too large, 415 unsupported type) and a
message naming the problem; nothing in here touches the protection.
"""

from __future__ import annotations

import io
import json
import secrets
import struct
from dataclasses import dataclass

import numpy as np

NPY_TYPE = "application/x-npy"
JSON_TYPE = "application/json"
IDS_HEADER = "x-template-ids"
MAX_ID = (1 << 63) - 1


class RequestError(Exception):
    """A request the service refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Templates:
    """A parsed request: ``rows`` float32 ``(N, D)``, ``ids`` int64 ``(N,)``, whether the ids were
    drawn here (``drawn_ids``), and the response format (``npy``)."""

    rows: np.ndarray
    ids: np.ndarray
    drawn_ids: bool
    npy: bool


def _ids(values: object, n: int) -> np.ndarray:
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise RequestError(400, "ids must be a list of integers")
    if len(values) != n:
        raise RequestError(400, f"{len(values)} ids for {n} templates")
    if any(v < 0 or v > MAX_ID for v in values):
        raise RequestError(400, f"ids must be in 0..{MAX_ID} (they key the protection's random start)")
    return np.asarray(values, dtype=np.int64)


def _header_ids(text: str | None) -> list[int] | None:
    if text is None or not text.strip():
        return None
    parts = [t.strip() for t in text.split(",")]
    # plain decimal digits only: int() would also take "1_000", "+5" and 400-digit numbers
    if not all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts):
        raise RequestError(400, f"{IDS_HEADER} must be comma-separated non-negative integers of at most 19 digits")
    return [int(p) for p in parts]


def _rows_from_json(body: bytes) -> tuple[np.ndarray, object]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:  # ValueError also: Python's limit on huge int literals
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None
    if not isinstance(doc, dict) or "templates" not in doc:
        raise RequestError(400, 'the JSON body must be an object with "templates" (and optional "ids")')
    extra = set(doc) - {"templates", "ids"}
    if extra:
        raise RequestError(400, f"unknown fields {sorted(extra)}; expected templates, ids")
    t = doc["templates"]
    if isinstance(t, list) and t and all(_is_number(v) for v in t):
        t = [t]
    if not isinstance(t, list) or not t or not all(isinstance(r, list) for r in t):
        raise RequestError(400, "templates must be a non-empty list of rows of numbers")
    if not all(_is_number(v) for r in t for v in r):
        raise RequestError(400, "templates must hold numbers only (no strings, booleans or nulls)")
    if any(isinstance(v, int) and abs(v) > 2**64 for r in t for v in r):
        raise RequestError(400, "a template value is an integer out of float32 range")
    if len({len(r) for r in t}) != 1:
        raise RequestError(400, "templates rows have different lengths")
    return np.asarray(t, dtype=np.float64), doc.get("ids")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rows_from_npy(body: bytes) -> np.ndarray:
    buf = io.BytesIO(body)
    try:  # the declared shape and dtype, checked against the body before numpy allocates for them
        version = np.lib.format.read_magic(buf)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(buf)
        declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if declared > len(body) - buf.tell():
            raise RequestError(400, f"the .npy header declares {shape} {dtype}, more than the body holds")
        buf.seek(0)
        arr = np.load(buf, allow_pickle=False)
    except RequestError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, struct.error, TypeError) as exc:
        raise RequestError(400, f"the body is not a readable .npy file: {exc}") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, "the body must be one .npy array, not an .npz archive")
    if arr.dtype != np.dtype("<f4") and arr.dtype != np.dtype("=f4"):
        raise RequestError(400, f"templates must be float32, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise RequestError(400, f"templates must be (N, D) or (D,), got shape {arr.shape}")
    return arr


MAX_NORM = 1e30  # far above any encoder's templates, far below float32's 3.4e38


def parse_request(body: bytes, content_type: str | None, ids_header: str | None, dim: int, max_rows: int) -> Templates:
    """Check and parse one request body (see the module doc). ``dim``: the decoder's dimension."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype == JSON_TYPE:
        rows, ids = _rows_from_json(body)
        npy = False
    elif ctype in (NPY_TYPE, "application/octet-stream"):
        rows, ids = _rows_from_npy(body), _header_ids(ids_header)
        npy = True
    else:
        raise RequestError(415, f"Content-Type must be {JSON_TYPE} or {NPY_TYPE}, got {content_type or 'none'!r}")
    n, d = rows.shape
    if n > max_rows:
        raise RequestError(413, f"{n} templates in one request; the limit is {max_rows}")
    if d != dim:
        raise RequestError(400, f"templates have dimension {d}; this service protects {dim}-d templates")
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise RequestError(400, f"template {bad} holds NaN or infinite values")
    if np.abs(rows).max() > np.finfo(np.float32).max:
        raise RequestError(400, "a value is out of float32 range")
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    if (norms == 0).any():
        raise RequestError(
            400, f"template {int(np.flatnonzero(norms == 0)[0])} is all zeros: it has no direction to protect"
        )
    if (norms > MAX_NORM).any():  # protection is on the direction; the result must fit float32 at this norm
        bad = int(np.flatnonzero(norms > MAX_NORM)[0])
        raise RequestError(400, f"template {bad} has norm {norms[bad]:.3g}; at most {MAX_NORM:g} is accepted")
    if ids is None:
        drawn = np.array([secrets.randbits(63) for _ in range(n)], dtype=np.int64)
        return Templates(rows.astype(np.float32), drawn, True, npy)
    return Templates(rows.astype(np.float32), _ids(ids, n), False, npy)


def encode_response(rows: np.ndarray, ids: np.ndarray, npy: bool) -> tuple[bytes, str, dict[str, str]]:
    """The response body, its content type and extra headers for protected ``rows``."""
    id_text = ",".join(map(str, ids.tolist()))
    if npy:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(rows, dtype="<f4"), allow_pickle=False)
        return buf.getvalue(), NPY_TYPE, {IDS_HEADER: id_text}
    doc = {"templates": rows.tolist(), "ids": ids.tolist()}
    # protect() never returns NaN/Inf (NonFiniteError); allow_nan=False keeps a response from carrying one
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode(), JSON_TYPE, {}
