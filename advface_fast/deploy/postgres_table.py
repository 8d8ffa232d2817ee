"""Protect a PostgreSQL table's embedding column in place: streamed, batched, resumable.

How a run goes (``protect_table``):

1. The settings (:meth:`Protector.settings`: decoder weights, eps, steps, start, key id, ...)
   are compared with the row of this column in the state table ``advface_protect_state``
   (created on first use). Other settings: refused (:class:`SettingsMismatchError`), nothing
   written; mixing two protections in one column would leave templates the system cannot tell
   apart. Same settings: the run continues after the last committed id.
2. A read connection streams ``id, embedding, xmin`` in id order through a server-side cursor
   (``itersize`` rows at a time) inside one read-only REPEATABLE READ transaction, from the first
   id above the state's high-water mark.
3. Each batch of ``batch_rows`` rows is protected (the table's integer id is the row id that keys
   the random start, so a row's result equals ``protect(features, row_ids=ids)`` for the same
   settings, whatever the batch) and written by a second connection in one transaction: the new
   values go through a temporary table (COPY) into an ``UPDATE ... WHERE id = .. AND xmin = ..``
   and the state row's high-water mark moves in the same transaction. A row changed by someone
   else since it was read (its ``xmin`` moved) makes the batch roll back and the run stop with
   :class:`ConcurrentUpdateError`: never a protected stale template over a fresh one. A kill at
   any moment leaves every batch either fully committed with its mark or not at all, so a rerun
   protects nothing twice and skips nothing.

The id column must hold non-negative integers, unique (a primary key); the column ``real[]``,
``double precision[]`` or ``bytea`` (little-endian float32, the row's ``D`` values). NULL
embeddings hold no template: counted and left NULL. A rerun after a finished run protects the
rows with ids above the mark (new enrolments appended since). Rows inserted with ids *below*
the mark are not seen: enrol new templates through the service (or protect them before insert).

The read transaction stays open for the whole run, which holds back VACUUM on that table for as
long: run large tables in a quiet period, or in several runs (``max_rows``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import AdvFaceError
from ..optional import import_optional
from ..protector import Protector

STATE_TABLE = "advface_protect_state"
LOCK_PREFIX = "advface_fast/protect-table/"
_TYPES = {"real[]": np.float32, "double precision[]": np.float64, "bytea": np.float32}


class SettingsMismatchError(AdvFaceError, ValueError):
    """The column was (partly) protected with other settings; the message names them."""


class ConcurrentRunError(AdvFaceError, RuntimeError):
    """Another ``protect_table`` run holds the column."""


class TableStateError(AdvFaceError, ValueError):
    """The column's state forbids the operation now (no finished run; clear rows above the mark)."""


class ConcurrentUpdateError(AdvFaceError, RuntimeError):
    """Rows changed under the run; the batch was rolled back (rerun to resume)."""


@dataclass(frozen=True)
class TableRunResult:
    """What a run did: rows protected now, NULL embeddings left, the high-water id, and whether
    the column had been finished with these settings before (``resumed`` from a partial run)."""

    protected: int
    null_rows: int
    last_id: int | None
    resumed: bool


def _psycopg():
    return import_optional("psycopg", "the PostgreSQL table path")


def _ident(name: str) -> Any:
    """A (possibly schema-qualified) identifier, quoted."""
    sql = _psycopg().sql
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ValueError(f"table name {name!r} must be 'table' or 'schema.table'")
    return sql.Identifier(*parts)


def _column_type(conn: Any, table: str, column: str) -> str:
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
        (table, column),
    ).fetchone()
    if row is None:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        raise ValueError(f"table {table} has no column {column!r}" if exists else f"no table {table!r}")
    return str(row[0])


def _qualified(conn: Any, table: str) -> str:
    """``schema.table`` of the table ``table`` names (as the search path resolves it)."""
    row = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    return str(row[0])


def _ensure_state_table(conn: Any) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} ("
        " target text PRIMARY KEY, settings jsonb NOT NULL, last_id bigint, rows_done bigint NOT NULL DEFAULT 0,"
        " null_rows bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)"
    )
    # added with provenance: state tables of earlier versions gain the column
    conn.execute(f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS provenance jsonb")


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _decode(value: Any, kind: str, dim: int | None, row_id: int) -> np.ndarray:
    if kind == "bytea":
        raw = bytes(value)
        if len(raw) % 4:
            raise ValueError(f"row id={row_id}: bytea of {len(raw)} bytes is not float32 values")
        v = np.frombuffer(raw, dtype="<f4")
    else:
        if any(isinstance(x, list) for x in value):
            raise ValueError(f"row id={row_id}: the embedding is a nested array; expected one dimension")
        v = np.asarray(value, dtype=_TYPES[kind])
    if v.size == 0:
        raise ValueError(f"row id={row_id}: the embedding is empty (an empty array, not NULL)")
    if dim is not None and v.shape != (dim,):
        raise ValueError(f"row id={row_id}: embedding has {v.size} values, the column's first row has {dim}")
    return v


def _encode(v: np.ndarray, kind: str) -> Any:
    return v.astype("<f4").tobytes() if kind == "bytea" else v.tolist()


def _batches(cur: Any, n: int) -> Iterator[list[tuple]]:
    while True:
        rows = cur.fetchmany(n)
        if not rows:
            return
        yield rows


def protect_table(
    dsn: str,
    table: str,
    protector: Protector,
    *,
    column: str = "embedding",
    id_column: str = "id",
    batch_rows: int = 1024,
    max_rows: int | None = None,
    progress: bool = True,
) -> TableRunResult:
    """Protect ``table.column`` in place with ``protector`` (see the module doc for the guarantees).

    Args:
        dsn: a libpq connection string or URI (``"host=/run/postgresql dbname=faces"``).
        table: ``"table"`` or ``"schema.table"``.
        protector: the :class:`~advface_fast.Protector` (decoder, key, eps, ...); its settings are
            recorded in ``advface_protect_state`` and must match on resume.
        column: the embedding column (``real[]``, ``double precision[]`` or float32 ``bytea``).
        id_column: unique non-negative integer id; it keys the random start (``row_ids``).
        batch_rows: rows per transaction (and per protect call).
        max_rows: stop after this many rows (the next run continues); default all.
        progress: a progress bar over the rows left.

    Returns:
        :class:`TableRunResult`.
    """
    psycopg = _psycopg()
    sql = psycopg.sql
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows must be a positive integer, got {batch_rows!r}")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    tbl, col, idc = _ident(table), sql.Identifier(column), sql.Identifier(id_column)
    with psycopg.connect(dsn) as wconn, psycopg.connect(dsn) as rconn:
        table = tbl.as_string(wconn)  # the name as the queries quote it: "Faces" is not faces
        kind = _column_type(wconn, table, column)
        if kind not in _TYPES:
            raise ValueError(
                f"column {column!r} of {table} is {kind}; supported: {', '.join(_TYPES)} (float32 little-endian bytea)"
            )
        id_kind = _column_type(wconn, table, id_column)
        if id_kind not in ("bigint", "integer", "smallint"):
            raise ValueError(f"id column {id_column!r} of {table} is {id_kind}; an integer id keys the protection")
        target = f"{_qualified(wconn, table)}.{column}"  # "faces" and "public.faces" are one table
        # one run per column at a time: a second run would read rows the first commits meanwhile as
        # clear and protect them twice (session lock: held across commits, released on disconnect)
        if not wconn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + target,)
        ).fetchone()[0]:
            raise ConcurrentRunError(
                f"another protect-table run is protecting {target} now; wait for it to finish (a rerun then "
                "continues where it stopped)"
            )
        _ensure_state_table(wconn)
        wconn.commit()

        # the dimension (from the first non-NULL row) decides the settings (eps scales with D)
        first = wconn.execute(
            sql.SQL("SELECT {c}, {i} FROM {t} WHERE {c} IS NOT NULL ORDER BY {i} LIMIT 1").format(c=col, t=tbl, i=idc)
        ).fetchone()
        wconn.rollback()
        if first is None:
            return TableRunResult(0, 0, None, False)
        dim = int(_decode(first[0], kind, None, first[1]).size)
        settings = {**protector.settings(dim), "dim": dim, "column_type": kind}

        state = wconn.execute(
            f"SELECT settings, last_id, finished_at FROM {STATE_TABLE} WHERE target = %s FOR UPDATE", (target,)
        ).fetchone()
        if state is None:
            wconn.execute(
                f"INSERT INTO {STATE_TABLE} (target, settings) VALUES (%s, %s)", (target, json.dumps(settings))
            )
            last_id, resumed = None, False
        else:
            if state[0] != settings:
                diff = ", ".join(_differences(settings, state[0]))
                raise SettingsMismatchError(
                    f"{target} was protected (up to id {state[1]}) with other settings ({diff} differ); "
                    f"protecting it again would mix two protections in one column. Restore the column from "
                    f"a backup, or delete its row of {STATE_TABLE} if the table was restored."
                )
            last_id, resumed = state[1], True
        # the column's provenance (package version, encoder, key id, transform, decoder, settings)
        record = protector.provenance(0, dim)
        record["source"] = {"table": target}
        wconn.execute(f"UPDATE {STATE_TABLE} SET provenance = %s WHERE target = %s", (json.dumps(record), target))
        wconn.commit()

        wconn.execute(
            sql.SQL(
                "CREATE TEMP TABLE advface_batch (id bigint PRIMARY KEY, rowver xid NOT NULL, new {k}) "
                "ON COMMIT DELETE ROWS"
            ).format(k=sql.SQL(kind))
        )
        wconn.commit()
        done = nulls = 0
        while True:  # a pass reads one snapshot; rows enrolled above it during the pass get another pass
            budget = max_rows - done - nulls if max_rows else None
            done_p, nulls_p, last_id = _pass(rconn, wconn, protector, (tbl, col, idc), kind, dim, target, last_id,
                                             batch_rows, budget, progress)  # fmt: skip
            done, nulls = done + done_p, nulls + nulls_p
            if max_rows is not None and done + nulls >= max_rows:
                break
            newer = wconn.execute(
                sql.SQL("SELECT count(*) FROM {t} WHERE {i} > %s").format(t=tbl, i=idc), (last_id,)
            ).fetchone()[0] if last_id is not None else 0  # fmt: skip
            wconn.rollback()
            if not newer:
                wconn.execute(f"UPDATE {STATE_TABLE} SET finished_at = now() WHERE target = %s", (target,))
                wconn.commit()
                break
        return TableRunResult(done, nulls, last_id, resumed)


def _pass(
    rconn: Any,
    wconn: Any,
    protector: Protector,
    names: tuple[Any, Any, Any],
    kind: str,
    dim: int,
    target: str,
    last_id: int | None,
    batch_rows: int,
    max_rows: int | None,
    progress: bool,
) -> tuple[int, int, int | None]:
    """One read pass over the rows above ``last_id`` in one REPEATABLE READ snapshot: ``(rows
    protected, NULL rows, the new last id)``."""
    sql = _psycopg().sql
    tbl, col, idc = names
    where = sql.SQL("WHERE {i} > %s").format(i=idc) if last_id is not None else sql.SQL("")
    params = (last_id,) if last_id is not None else ()
    rconn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    (left,) = rconn.execute(sql.SQL("SELECT count(*) FROM {t} ").format(t=tbl) + where, params).fetchone()
    total = min(left, max_rows) if max_rows else left
    cur = rconn.cursor(name="advface_protect_read")
    cur.itersize = batch_rows
    cur.execute(
        sql.SQL("SELECT {i}, {c}, xmin::text FROM {t} ").format(i=idc, c=col, t=tbl)
        + where
        + sql.SQL(" ORDER BY {i}").format(i=idc)
        + (sql.SQL(" LIMIT %s") if max_rows else sql.SQL("")),
        (*params, max_rows) if max_rows else params,
    )
    done = nulls = 0
    with tqdm(total=total, unit="row", desc=f"protect {target}", disable=not progress, dynamic_ncols=True) as bar:
        for rows in _batches(cur, batch_rows):
            done_b, nulls_b, last_id = _protect_batch(wconn, rows, kind, dim, protector, tbl, col, idc, target)
            done, nulls = done + done_b, nulls + nulls_b
            bar.update(len(rows))
    cur.close()
    rconn.rollback()
    return done, nulls, last_id


def _protect_batch(
    wconn: Any,
    rows: list[tuple],
    kind: str,
    dim: int,
    protector: Protector,
    tbl: Any,
    col: Any,
    idc: Any,
    target: str,
) -> tuple[int, int, int]:
    """Protect and write one batch in one transaction; returns (protected, NULL rows, last id)."""
    sql = _psycopg().sql
    live = [r for r in rows if r[1] is not None]
    last_id = int(rows[-1][0])
    if live:
        ids = np.array([int(r[0]) for r in live], dtype=np.int64)
        if ids.min() < 0:
            raise ValueError(f"row id={int(ids.min())} is negative; the protection is keyed by non-negative ids")
        feats = np.stack([_decode(r[1], kind, dim, int(r[0])) for r in live])
        if not np.isfinite(feats).all():
            bad = int(ids[~np.isfinite(feats).all(axis=1)][0])
            raise ValueError(f"row id={bad}: the embedding has NaN or infinite values; nothing of this batch written")
        safe = protector(feats, row_ids=ids)
        with wconn.cursor() as cur:
            with cur.copy("COPY advface_batch (id, rowver, new) FROM STDIN") as cp:
                for rid, r, v in zip(ids.tolist(), live, safe, strict=True):
                    cp.write_row((rid, r[2], _encode(v, kind)))
            cur.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = b.new FROM advface_batch b WHERE {t}.{i} = b.id AND {t}.xmin = b.rowver"
                ).format(t=tbl, c=col, i=idc)
            )
            if cur.rowcount != len(live):
                wconn.rollback()
                raise ConcurrentUpdateError(
                    f"{len(live) - cur.rowcount} of {len(live)} rows with ids {int(ids[0])}..{int(ids[-1])} changed "
                    "while they were protected; this batch was rolled back, earlier batches are committed. "
                    "Run again to resume."
                )
    wconn.execute(
        f"UPDATE {STATE_TABLE} SET last_id = %s, rows_done = rows_done + %s, null_rows = null_rows + %s, "
        "updated_at = now() WHERE target = %s",
        (last_id, len(live), len(rows) - len(live), target),
    )
    wconn.commit()
    return len(live), len(rows) - len(live), last_id


def table_state(dsn: str, table: str, column: str = "embedding") -> dict[str, Any] | None:
    """The state row of ``table.column`` (settings, last_id, rows_done, null_rows, finished_at,
    provenance), or None."""
    psycopg = _psycopg()
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass(%s) IS NULL", (STATE_TABLE,)).fetchone()[0]:
            return None
        quoted = _ident(table).as_string(conn)  # as protect_table names it
        if conn.execute("SELECT to_regclass(%s) IS NULL", (quoted,)).fetchone()[0]:
            raise ValueError(f"no table {table!r}")
        row = conn.execute(
            # to_jsonb(s) -> 'provenance': NULL on a state table from before the column existed
            "SELECT settings, last_id, rows_done, null_rows, finished_at, to_jsonb(s) -> 'provenance' "
            f"FROM {STATE_TABLE} s WHERE target = %s",
            (f"{_qualified(conn, quoted)}.{column}",),
        ).fetchone()
    if row is None:
        return None
    keys = ("settings", "last_id", "rows_done", "null_rows", "finished_at", "provenance")
    return dict(zip(keys, row, strict=True))


def read_protected_table(
    dsn: str, table: str, column: str = "embedding", id_column: str = "id"
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(ids (N,) int64, templates (N, D), provenance record)`` of a column ``protect_table``
    finished: the rows up to its high-water mark, the record built from its state row. Refuses a
    column whose run has not finished, or with rows above the mark (inserted since, so clear)."""
    from .. import provenance

    state = table_state(dsn, table, column)
    if state is None or state["finished_at"] is None:
        raise ValueError(
            f"{table}.{column} has no finished protection run (advface-fast protect-table): its templates may be clear"
        )
    settings = dict(state["settings"])
    kind, dim, last = settings.pop("column_type"), settings.pop("dim"), state["last_id"]
    sql = _psycopg().sql
    tbl, col, idc = _ident(table), sql.Identifier(column), sql.Identifier(id_column)
    with _psycopg().connect(dsn) as conn:
        above = conn.execute(
            sql.SQL("SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND {i} > %s").format(t=tbl, c=col, i=idc), (last,)
        ).fetchone()[0]
        if above:
            raise ValueError(
                f"{table}.{column} has {above} rows above the protected mark (id {last}), enrolled since the run: they "
                "are clear; run advface-fast protect-table again first"
            )
        rows = conn.execute(
            sql.SQL("SELECT {i}, {c} FROM {t} WHERE {c} IS NOT NULL ORDER BY {i}").format(t=tbl, c=col, i=idc)
        ).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    z = np.stack([_decode(r[1], kind, dim, r[0]) for r in rows]) if rows else np.zeros((0, dim), np.float32)
    record = state.get("provenance") or provenance.new_record(
        "protected", len(ids), dim, None, protection=provenance.protection_record(settings), source={"table": table}
    )  # a column protected before provenance was recorded: built from its settings
    record = {**record, "rows": len(ids)}
    return ids, z, record


def enrol_protected(
    dsn: str,
    table: str,
    ids: np.ndarray,
    templates: np.ndarray,
    labels: list[str] | None = None,
    *,
    column: str = "embedding",
    id_column: str = "id",
) -> None:
    """Insert templates already protected with the column's settings (by the service) as new
    rows, in one transaction that keeps the column's invariant: every row at or below the state's
    high-water mark is protected. Refuses while a ``protect_table`` run holds the column, when the
    column has no finished run, and when clear rows wait above the mark (run ``protect-table``
    first: moving the mark past them would leave them clear). ``labels`` go into the state's
    provenance (the matcher's people). Raises ``KeyError`` for an id already in the table."""
    psycopg = _psycopg()
    sql = psycopg.sql
    tbl, col, idc = _ident(table), sql.Identifier(column), sql.Identifier(id_column)
    with psycopg.connect(dsn) as conn:
        quoted = tbl.as_string(conn)
        kind = _column_type(conn, quoted, column)
        target = f"{_qualified(conn, quoted)}.{column}"
        if not conn.execute(
            "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + target,)
        ).fetchone()[0]:
            raise ConcurrentRunError(f"a protect-table run is protecting {target} now; enrol when it has finished")
        state = conn.execute(
            f"SELECT settings, last_id, finished_at FROM {STATE_TABLE} WHERE target = %s FOR UPDATE", (target,)
        ).fetchone()
        if state is None or state[2] is None:
            raise TableStateError(
                f"{target} has no finished protection run (advface-fast protect-table) to enrol beside"
            )
        if state[0]["dim"] != templates.shape[1]:
            raise ValueError(f"{target} holds {state[0]['dim']}-d templates, not {templates.shape[1]}-d")
        last = state[1]
        pending = conn.execute(
            sql.SQL("SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND {i} > %s").format(t=tbl, c=col, i=idc),
            (last if last is not None else -1,),
        ).fetchone()[0]
        if pending:
            raise TableStateError(
                f"{target} has {pending} clear rows above its protected mark (id {last}): run advface-fast "
                "protect-table first"
            )
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {t} ({i}, {c}) VALUES (%s, %s)").format(t=tbl, i=idc, c=col),
                    [(int(i), _encode(v, kind)) for i, v in zip(ids.tolist(), templates, strict=True)],
                )
        except psycopg.errors.UniqueViolation as exc:
            raise KeyError(f"enrolment ids already used in {target}") from exc
        named = {str(int(i)): lab for i, lab in zip(ids.tolist(), labels or [], strict=False) if lab != str(int(i))}
        conn.execute(
            f"UPDATE {STATE_TABLE} SET last_id = GREATEST(coalesce(last_id, -1), %s), rows_done = rows_done + %s, "
            "provenance = jsonb_set(coalesce(provenance, '{}'::jsonb), '{labels}', "
            "(CASE WHEN jsonb_typeof(provenance -> 'labels') = 'object' THEN provenance -> 'labels' "
            "ELSE '{}'::jsonb END) || %s::jsonb) WHERE target = %s",
            (int(ids.max()), len(ids), json.dumps(named), target),
        )
