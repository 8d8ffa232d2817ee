"""Sharded galleries on disk: find the shards, validate them, read row ranges, write results.

Two formats, one per gallery:

* ``.npy`` shards: each ``(N_i, D)`` float16/32/64, C order. Ids come from a sidecar
  ``<stem>.ids.npy`` (1-D integers, ``N_i`` of them) when every shard has one, else from the row's
  position in the whole gallery (shards in name order), so ``ids = 0..N-1`` as for :func:`protect`.
* Parquet shards: a feature column (a fixed-size list of floats, a list of floats, or an Arrow
  tensor extension type over a fixed-size list: ``arrow.fixed_shape_tensor`` or Ray's tensor
  type) and an id column (integers or strings). Every other column is kept as it is.

Nothing here imports Ray: the same functions run on the driver (headers and schemas only) and in
the workers (the rows).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryFormatError
from ..io.npy import NpyRowReader, NpyRowWriter
from .run_state import replace_durably

FORMATS = ("npy", "parquet")
IDS_SUFFIX = ".ids.npy"
_ID_MASK = (1 << 63) - 1


@dataclass(frozen=True)
class Shard:
    """One input file: ``name`` (relative to the gallery folder), ``rows``, feature ``dim``,
    ``dtype`` (numpy name of the stored features), ``ids`` (``"sidecar" | "position" | "column"``),
    ``first_row`` (its offset in the whole gallery), ``size`` and ``content`` (a hash of the file's
    bytes, with its ids sidecar: a resume needs the same bytes, whatever the timestamps say)."""

    name: str
    rows: int
    dim: int
    dtype: str
    ids: str
    first_row: int
    size: int
    content: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _content_hash(path: Path, sidecar: Path | None) -> str:
    """BLAKE2b of a shard's bytes (and of its ids sidecar), streamed in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    for f in (path, sidecar):
        if f is None:
            continue
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def seed_ids(ids: Any) -> np.ndarray:
    """The ``row_ids`` that key a row's random start: ``(N,)`` int64, non-negative.

    Non-negative integer ids are used as they are; strings and bytes are hashed (BLAKE2b, 63 bits),
    so a row's noise depends on its id alone, never on its shard or batch. To reproduce a
    distributed run in one process: ``protect(features, ..., row_ids=seed_ids(ids))``.
    """
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.size and arr.min() < 0:
            raise ValueError("integer ids must be non-negative to key the random start")
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _ID_MASK:
            raise ValueError("integer ids must fit in 63 bits")
        return arr.astype(np.int64)
    if arr.dtype.kind in "USO":
        out = np.empty(len(arr), dtype=np.int64)
        for i, v in enumerate(arr.tolist()):
            if v is None:
                raise ValueError(f"id at position {i} is null")
            b = v if isinstance(v, bytes) else str(v).encode()
            out[i] = int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little") & _ID_MASK
        return out
    raise ValueError(f"ids must be integers or strings, got dtype {arr.dtype}")


# -- discovery -----------------------------------------------------------------------------------
def _format_of(files: list[Path], root: Path) -> str:
    kinds = {p.suffix.lower() for p in files}
    if not files:
        raise FileNotFoundError(f"no .npy or .parquet shards in {root}")
    if len(kinds) > 1:
        raise GalleryFormatError(f"{root} mixes .npy and .parquet shards; keep one format per gallery")
    return "npy" if kinds == {".npy"} else "parquet"


def list_shard_files(root: Path) -> tuple[str, list[Path]]:
    """``(format, files)``: the gallery's shards in name order (``*.ids.npy`` sidecars excluded)."""
    if not root.is_dir():
        raise FileNotFoundError(f"gallery folder not found: {root}")
    files = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in (".npy", ".parquet") and not p.name.endswith(IDS_SUFFIX)
    )
    return _format_of(files, root), files


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npy")] + IDS_SUFFIX)


def _npy_shards(files: list[Path]) -> list[Shard]:
    sidecars = [_sidecar(p).exists() for p in files]
    if any(sidecars) and not all(sidecars):
        missing = [p.name for p, s in zip(files, sidecars, strict=True) if not s]
        raise GalleryFormatError(
            f"some shards have {IDS_SUFFIX} id files and some do not (missing for {', '.join(missing[:5])}); "
            "give every shard one, or none (ids are then row positions)"
        )
    shards, first = [], 0
    for p, has_ids in zip(files, sidecars, strict=True):
        reader = NpyRowReader(p, ndim=2)
        reader.close()
        if reader.dtype.kind != "f" or reader.dtype.itemsize not in (2, 4, 8):
            raise GalleryFormatError(f"{p} holds {reader.dtype}; shards must be float16/32/64")
        rows, dim = reader.shape
        if has_ids:
            try:
                ids = np.load(_sidecar(p), mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise GalleryFormatError(f"{_sidecar(p)} is not a readable .npy id file ({exc})") from exc
            if ids.shape != (rows,) or ids.dtype.kind not in "iu":
                raise GalleryFormatError(
                    f"{_sidecar(p)} must hold {rows} integer ids (one per row of {p.name}), "
                    f"got shape {ids.shape} dtype {ids.dtype}"
                )
        st = p.stat()
        shards.append(
            Shard(
                p.name,
                rows,
                dim,
                reader.dtype.newbyteorder("=").name,
                "sidecar" if has_ids else "position",
                first,
                st.st_size,
                _content_hash(p, _sidecar(p) if has_ids else None),
            )
        )
        first += rows
    return shards


def _feature_storage_type(field_type: Any) -> Any:
    """The list type under an extension type (tensor columns), else the type itself."""
    import pyarrow as pa

    return field_type.storage_type if isinstance(field_type, pa.BaseExtensionType) else field_type


def _parquet_shards(files: list[Path], feature_column: str, id_column: str) -> list[Shard]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards, first = [], 0
    for p in files:
        try:
            pf = pq.ParquetFile(p)
        except (pa.ArrowException, OSError) as exc:
            raise GalleryFormatError(f"{p} is not a readable Parquet file ({exc})") from exc
        schema = pf.schema_arrow
        for col in (feature_column, id_column):
            if schema.get_field_index(col) < 0:
                raise GalleryFormatError(f"{p} has no column {col!r} (columns: {', '.join(schema.names)})")
        ftype = _feature_storage_type(schema.field(feature_column).type)
        if not (pa.types.is_list(ftype) or pa.types.is_large_list(ftype) or pa.types.is_fixed_size_list(ftype)):
            raise GalleryFormatError(f"{p}: column {feature_column!r} is {ftype}, not a list of floats")
        if not pa.types.is_floating(ftype.value_type):
            raise GalleryFormatError(f"{p}: column {feature_column!r} holds {ftype.value_type}, not floats")
        itype = schema.field(id_column).type
        if not (pa.types.is_integer(itype) or pa.types.is_string(itype) or pa.types.is_large_string(itype)):
            raise GalleryFormatError(f"{p}: id column {id_column!r} is {itype}; ids must be integers or strings")
        # a fixed-size list states its dimension; a variable list is checked row by row when read
        dim = ftype.list_size if pa.types.is_fixed_size_list(ftype) else -1
        st = p.stat()
        rows = pf.metadata.num_rows
        shards.append(
            Shard(p.name, rows, dim, str(ftype.value_type), "column", first, st.st_size, _content_hash(p, None))
        )
        first += rows
    return shards


def scan_gallery(
    root: str | os.PathLike[str], feature_column: str = "feature", id_column: str = "id"
) -> tuple[str, list[Shard]]:
    """Find and validate the shards of the gallery folder ``root`` from headers and schemas alone.

    Returns ``(format, shards)``. Raises :class:`~advface_fast.errors.GalleryFormatError` naming the
    file for a corrupt shard, shards of different feature dimensions, or missing columns.
    """
    root = Path(root)
    fmt, files = list_shard_files(root)
    shards = _npy_shards(files) if fmt == "npy" else _parquet_shards(files, feature_column, id_column)
    dims = {s.dim for s in shards if s.dim >= 0}
    if len(dims) > 1:
        first = {}
        for s in shards:
            first.setdefault(s.dim, s.name)
        detail = ", ".join(f"{n}: {d}" for d, n in first.items() if d >= 0)
        raise GalleryFormatError(f"shards of {root} have different feature dimensions ({detail})")
    if sum(s.rows for s in shards) == 0:
        raise GalleryFormatError(f"the gallery in {root} has no rows")
    return fmt, shards


# -- reading -------------------------------------------------------------------------------------
def _check_rows(features: np.ndarray, path: Path, first: int, dim: int | None) -> None:
    if dim is not None and features.shape[1] != dim:
        raise GalleryFormatError(f"{path} has features of dimension {features.shape[1]}, expected {dim}")
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        raise GalleryFormatError(f"{path} holds NaN or Inf, first at row {first + int(np.flatnonzero(bad)[0])}")


def read_npy_rows(
    root: Path, shard: Shard, start: int, stop: int, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, D) of the stored dtype, ids (n,) int64)`` of rows ``[start, stop)``; finite-checked."""
    path = root / shard.name
    reader = NpyRowReader(path, ndim=2)
    try:
        features = reader.read(start, stop)
    finally:
        reader.close()
    _check_rows(features, path, start, dim)
    if shard.ids == "sidecar":
        ids = np.asarray(np.load(_sidecar(path), mmap_mode="r")[start:stop], dtype=np.int64)
    else:
        ids = np.arange(shard.first_row + start, shard.first_row + stop, dtype=np.int64)
    return features, ids


def _column_features(column: Any, path: Path, feature_column: str) -> np.ndarray:
    """A list/fixed-size-list/tensor column as a ``(n, D)`` float array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(column.type, pa.BaseExtensionType):
        column = column.storage
    if column.null_count:
        raise GalleryFormatError(f"{path}: column {feature_column!r} has {column.null_count} null rows")
    n = len(column)
    if pa.types.is_fixed_size_list(column.type):
        dim = column.type.list_size
    else:
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        dim = int(lengths[0]) if n else 0
        if n and (lengths != dim).any():
            row = int(np.flatnonzero(lengths != dim)[0])
            raise GalleryFormatError(
                f"{path}: feature rows have different lengths ({dim} in row 0, {int(lengths[row])} in row {row})"
            )
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(n, dim)


def read_parquet_table(root: Path, shard: Shard, feature_column: str, dim: int | None = None) -> tuple[Any, np.ndarray]:
    """``(table, features (n, D))`` of a whole Parquet shard; finite- and dimension-checked."""
    import pyarrow.parquet as pq

    path = root / shard.name
    table = pq.read_table(path)
    features = _column_features(table.column(feature_column), path, feature_column)
    _check_rows(features, path, 0, dim)
    return table, features


# -- writing -------------------------------------------------------------------------------------
def create_npy_output(path: Path, rows: int, dim: int, dtype: str) -> None:
    """Preallocate a full-size ``.npy`` that tasks fill by row ranges (idempotent: retried tasks
    rewrite the same bytes)."""
    NpyRowWriter(path, (rows, dim), np.dtype(dtype), create=True).close()


def write_npy_rows(path: Path, rows: int, start: int, features: np.ndarray) -> None:
    """Write ``features`` at row ``start`` of the preallocated ``path`` and make it durable."""
    writer = NpyRowWriter(path, (rows, features.shape[1]), features.dtype, create=False)
    try:
        writer.write(start, features)
        writer.sync()
    finally:
        writer.close()


def write_ids(path: Path, shard: Shard, root: Path) -> None:
    """The output's ``<stem>.ids.npy``: the input's sidecar ids, or the rows' gallery positions."""
    if shard.ids == "sidecar":
        ids = np.asarray(np.load(_sidecar(root / shard.name), mmap_mode="r"), dtype=np.int64)
    else:
        ids = np.arange(shard.first_row, shard.first_row + shard.rows, dtype=np.int64)
    np.save(path, ids)


def ids_name(shard_name: str) -> str:
    """The id file that goes with an ``.npy`` shard name."""
    return shard_name[: -len(".npy")] + IDS_SUFFIX


def replace_feature_column(table: Any, feature_column: str, features: np.ndarray) -> Any:
    """``table`` with its feature column replaced by ``features`` ``(n, D)``, in the column's own
    Arrow type (fixed-size list, list, or the same tensor extension type)."""
    import pyarrow as pa

    idx = table.schema.get_field_index(feature_column)
    field = table.schema.field(idx)
    storage_type = _feature_storage_type(field.type)
    dim = features.shape[1]
    values = pa.array(features.reshape(-1).astype(storage_type.value_type.to_pandas_dtype(), copy=False))
    column: Any = pa.FixedSizeListArray.from_arrays(values, dim)
    if not pa.types.is_fixed_size_list(storage_type):
        column = column.cast(storage_type)
    if isinstance(field.type, pa.BaseExtensionType):
        column = pa.ExtensionArray.from_storage(field.type, column)
    return table.set_column(idx, field, column)


def write_parquet_atomic(path: Path, table: Any) -> None:
    """Write ``table`` to ``path`` through a temporary name, fsync'ed, then renamed (atomic)."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    replace_durably(tmp, path)
