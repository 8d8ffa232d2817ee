"""Stream protected rows to an ``.npy`` file, resumable, shown under its final name only when complete.

Layout while running: ``OUT.partial`` (the full-size ``.npy``, filled in row order) and
``OUT.partial.json`` (what run it belongs to and how many rows are durably written). The state is
updated only after the data file is fsync'ed, at most once a second, so after a crash or a kill the
state never claims rows that are not on disk; the rows after the checkpoint are recomputed on
resume, which gives identical bytes because a row's result depends only on the row and the
settings. On completion the data file is fsync'ed and renamed to ``OUT`` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ResumeMismatchError
from .npy import NpyRowWriter

STATE_VERSION = 1
CHECKPOINT_SECONDS = 1.0


def partial_paths(out: Path) -> tuple[Path, Path]:
    """``(data, state)`` paths of the in-progress output for ``out``."""
    return out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.json")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) and state.get("version") == STATE_VERSION else None


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path``'s folder durable."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """The state file, replaced atomically and durably (fsync file, rename, fsync folder); never
    written through a link planted at either name."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path)


class OutputLock:
    """An exclusive ``flock`` on ``OUT.lock`` for the run's lifetime: a second writer to the same
    output fails at once with a clear error instead of truncating the first one's partial file."""

    def __init__(self, out: Path) -> None:
        import fcntl

        self.path = out.with_name(out.name + ".lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise FileExistsError(
                f"another run is writing {out} (it holds {self.path}); wait for it or write elsewhere"
            ) from exc

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)  # closing drops the lock
            self._fd = -1


class NpyFileSink:
    """Writes protected rows to ``out`` (see module doc). ``run_id`` describes the run: input
    fingerprint and every setting that changes the result; a partial output with another run_id is
    never resumed into."""

    def __init__(
        self,
        out: Path,
        shape: tuple[int, int],
        dtype: np.dtype,
        run_id: dict[str, Any],
        *,
        resume: bool,
    ) -> None:
        self.out = out
        self.data_path, self.state_path = partial_paths(out)
        self.run_id = run_id
        self.rows_done = 0
        self.lock = OutputLock(out)
        try:
            self._open(shape, dtype, resume)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, shape: tuple[int, int], dtype: np.dtype, resume: bool) -> None:
        run_id = self.run_id
        # links planted at either partial name are never read or written through: without a state
        # of our own the run starts afresh, and creating the files replaces the links themselves
        ours = not (self.state_path.is_symlink() or self.data_path.is_symlink())
        state = _read_state(self.state_path) if ours and self.data_path.exists() else None
        if state is not None and resume:
            if state.get("run") != run_id:
                diff = sorted(
                    k for k in set(run_id) | set(state.get("run", {})) if run_id.get(k) != state["run"].get(k)
                )
                raise ResumeMismatchError(
                    f"{self.data_path} is the partial output of a different run (differs in: {', '.join(diff)}); "
                    "pass resume=False (CLI: --no-resume) to discard it and start over"
                )
            self.writer = NpyRowWriter(self.data_path, shape, dtype, create=False)
            self.rows_done = int(state["rows_done"])
        else:
            self.writer = NpyRowWriter(self.data_path, shape, dtype, create=True)
            self._checkpoint(0)
        self._last_checkpoint = time.monotonic()
        self._written = self.rows_done

    def _checkpoint(self, rows: int) -> None:
        self.writer.sync()
        _write_state(self.state_path, {"version": STATE_VERSION, "run": self.run_id, "rows_done": rows})
        self._last_checkpoint = time.monotonic()

    def write(self, start: int, rows: torch.Tensor) -> None:
        """Write rows in order (``start`` must follow the previous write)."""
        if start != self._written:
            raise AssertionError(f"rows must be written in order: expected row {self._written}, got {start}")
        rows = rows.detach().to("cpu")
        self.writer.write(start, (rows.float() if rows.dtype == torch.bfloat16 else rows).numpy())
        self._written = start + len(rows)
        if time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS:
            self._checkpoint(self._written)

    def finalize(self) -> np.ndarray:
        """Publish the complete file under its final name; return it memory-mapped read-only."""
        self.writer.sync()
        self.writer.close()
        if self.out.is_symlink():  # never publish over (or through) a planted link
            os.unlink(self.out)
        os.replace(self.data_path, self.out)
        _fsync_dir(self.out)
        self.state_path.unlink(missing_ok=True)
        self.lock.release()
        return np.load(self.out, mmap_mode="r")

    def abort(self) -> None:
        """Keep what is durably written for a later resume; release the file."""
        try:
            self._checkpoint(self._written)
        finally:
            self.writer.close()
            self.lock.release()
