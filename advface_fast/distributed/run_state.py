"""The output folder of a distributed run: what it belongs to, what is done, when it is published.

Layout of ``OUT_DIR``::

    _advface_run.json       the run: settings, models, input shards, task plan, status
    .work/                  while running: one output file per input shard, filled by tasks
    .work/done/<task>       a task's rows are durably written (created after fsync)
    <shard names>           published, all at once, when every task is done

A task's output is a pure function of its rows and the settings, so a task retried after a worker
died rewrites the same bytes; a re-run over ``OUT_DIR`` with the same input and settings resumes
(tasks with a done marker are skipped), with anything else it refuses: outputs are never mixed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ResumeMismatchError

MANIFEST = "_advface_run.json"
WORK = ".work"
VERSION = 1


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, then rename it to ``path`` (atomic): ``path`` is the old or the whole new file."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    replace_durably(tmp, path)


def done_marker(out_dir: Path, task: int) -> Path:
    return out_dir / WORK / "done" / f"{task:08d}"


def mark_done(out_dir: Path, task: int, node: str = "") -> None:
    """Mark ``task`` done; the marker holds the id of the Ray node that ran it."""
    tmp = done_marker(out_dir, task).with_suffix(".tmp")
    tmp.write_text(node)
    os.replace(tmp, done_marker(out_dir, task))


def task_nodes(out_dir: Path) -> list[str]:
    """The distinct nodes that ran this run's done tasks (from their markers)."""
    folder = out_dir / WORK / "done"
    if not folder.is_dir():
        return []
    return sorted({f.read_text() for f in folder.iterdir() if f.suffix != ".tmp"} - {""})


def record_attempt(out_dir: Path, task: int) -> int:
    """Count one more start of ``task`` in this run (a byte appended to its file on the shared
    file system, so a restarted actor on any node sees it); returns the count including this one."""
    path = out_dir / WORK / "attempts" / f"{task:08d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, b".")
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def clear_attempts(out_dir: Path) -> None:
    """Forget the previous run's attempt counts (a re-run gives every task its retries again)."""
    folder = out_dir / WORK / "attempts"
    if folder.is_dir():
        for f in folder.iterdir():
            f.unlink()


def pending_tasks(out_dir: Path, tasks: list[list[int]]) -> list[int]:
    """Indices of the plan's tasks without a done marker."""
    return [i for i in range(len(tasks)) if not done_marker(out_dir, i).exists()]


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _output_names(manifest: dict[str, Any], where: Path) -> list[str]:
    """The manifest's output names, each a plain file name inside the run folder. A manifest is a
    file anyone with write access to the folder can edit: a name with a path separator, ``..``,
    an absolute path or a NUL would make clearing or publishing reach files outside it."""
    names = manifest.get("outputs", [])
    if not isinstance(names, list):
        raise ResumeMismatchError(f"{where}: 'outputs' must be a list of file names")
    for name in names:
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
            or Path(name).name != name
        ):
            raise ResumeMismatchError(
                f"{where}: output name {name!r} is not a plain file name inside the run folder; refusing to touch it"
            )
    return names


def _clear(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Remove what a previous run wrote (and only that: plain names inside ``out_dir``)."""
    for name in _output_names(manifest, out_dir / MANIFEST):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / WORK, ignore_errors=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)


def open_run(
    out_dir: Path, run: dict[str, Any], tasks: list[list[int]], outputs: list[str], *, overwrite: bool, resume: bool
) -> tuple[dict[str, Any], bool]:
    """Create or reopen the run in ``out_dir``; return ``(manifest, fresh)``.

    ``run`` identifies the result (settings, model fingerprints, input shards). A folder holding a
    complete run is refused unless ``overwrite``; one holding an interrupted run of the same
    ``run`` is resumed (its stored task plan kept) unless ``resume`` is false; a different run or
    a folder with other files is refused.
    """
    path = out_dir / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeMismatchError(f"{path} is unreadable ({exc}); remove {out_dir} or choose another") from exc
        if overwrite:
            _clear(out_dir, old)
        elif old.get("status") == "complete":
            raise FileExistsError(
                f"{out_dir} already holds a complete protected gallery; pass overwrite=True (CLI: --overwrite)"
            )
        elif old.get("version") != VERSION or old.get("run") != run:
            diff = _differences(run, old.get("run", {}))
            raise ResumeMismatchError(
                f"{out_dir} holds an interrupted run with other settings or input (differs in: {', '.join(diff)}); "
                "pass overwrite=True (CLI: --overwrite) to discard it"
            )
        elif not resume:
            _clear(out_dir, old)
        else:
            return old, False
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no advface run; choose an empty or new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / WORK / "done").mkdir(parents=True, exist_ok=True)
    manifest = {"version": VERSION, "status": "running", "run": run, "tasks": tasks, "outputs": outputs}
    _write_json(path, manifest)
    return manifest, True


def publish(out_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Move every output from ``.work`` to its final name, then mark the run complete; returns the
    nodes that ran the tasks (recorded in the manifest).

    Idempotent: after a crash half-way, a re-run finds the moved files in place and moves the rest.
    """
    work = out_dir / WORK
    for name in _output_names(manifest, out_dir / MANIFEST):
        src = work / name
        if src.exists():
            os.replace(src, out_dir / name)
        elif not (out_dir / name).exists():
            raise FileNotFoundError(f"output {name} is neither in {work} nor in {out_dir}")
    manifest = {**manifest, "status": "complete", "nodes": task_nodes(out_dir) or manifest.get("nodes", [])}
    _write_json(out_dir / MANIFEST, manifest)
    shutil.rmtree(work, ignore_errors=True)
    return manifest["nodes"]
