"""The actor of the distributed pipeline: loads the models once, then protects task after task.

A task is a row range of one input shard (a whole shard for Parquet). The worker reads its rows
from the shared file system, checks them, runs :class:`~advface_fast.protector.Protector` in
memory (``row_ids`` from the gallery's ids), writes the rows to their place in the output and
only then marks the task done. Feature rows never travel through Ray's object store: the pipeline
moves task descriptions, and each output lands at a position fixed by the plan, so a retried task
rewrites identical bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryFormatError
from . import gallery as g
from .run_state import WORK, done_marker, mark_done, record_attempt


class TaskAbandonedError(RuntimeError):
    """A task started more often than its retries allow: it kills its worker (out of memory, a
    crash), and restarting the worker again would loop forever."""


# errors in the data or the settings, and abandoned tasks, reported to the driver as they are
# (anything else is a bug or a machine failure and propagates through Ray with its traceback)
REPORTED_ERRORS = (GalleryFormatError, ValueError, TypeError, FileNotFoundError, TaskAbandonedError)
REPORTED_ERROR_TYPES = {cls.__name__: cls for cls in REPORTED_ERRORS}


@dataclass
class WorkerConfig:
    """What every actor needs (sent once, at actor start)."""

    in_dir: str
    out_dir: str
    fmt: str
    shards: list[dict[str, Any]]
    tasks: list[list[int]]
    decoder: Any  # a model path, or a Ray ObjectRef of an nn.Module
    encoder: Any  # None, a model path (.safetensors / .onnx), or a Ray ObjectRef of an nn.Module
    protect_kwargs: dict[str, Any] = field(default_factory=dict)
    feature_column: str = "feature"
    id_column: str = "id"
    device: str = "cpu"
    threads: int | None = None
    max_attempts: int = 4  # starts of one task (1 + retries) before the run is ended


def _resolve(model: Any) -> Any:
    """A model sent as an ObjectRef (modules are put in the object store once, by the driver,
    which holds the reference for the whole run, so a restarted actor can fetch it again)."""
    if type(model).__name__ == "ObjectRef":
        import ray

        return ray.get(model)
    return model


def _node_id() -> str:
    """The Ray node this actor runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except ImportError:
        return ""


class ProtectWorker:
    """``map_batches`` callable: ``{"task": (k,) int64}`` -> ``{"task", "rows"}`` of the tasks done."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch

        from ..models.serialization import load_model
        from ..protector import Protector

        if config.threads:
            torch.set_num_threads(config.threads)
        self.config = config
        self.in_dir, self.out_dir = Path(config.in_dir), Path(config.out_dir)
        self.shards = [g.Shard(**s) for s in config.shards]
        self.dim = next((s.dim for s in self.shards if s.dim >= 0), None)
        decoder, encoder = (_resolve(m) for m in (config.decoder, config.encoder))
        if isinstance(decoder, str):
            decoder = load_model(decoder)
        self.protector = Protector(decoder, encoder, device=config.device, progress=False, **config.protect_kwargs)
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [int(t) for t in batch["task"]]
        rows, kinds, errors = [], [], []
        for t in tasks:
            try:
                rows.append(self.run_task(t))
                kinds.append("")
                errors.append("")
            except REPORTED_ERRORS as exc:
                # returned, not raised: Ray's wrappers keep only a traceback string of a raised
                # exception, and the driver must re-raise a bad shard as the error it is
                rows.append(0)
                kinds.append(type(exc).__name__)
                errors.append(str(exc))
        return {
            "task": np.asarray(tasks, dtype=np.int64),
            "rows": np.asarray(rows, dtype=np.int64),
            "error_kind": np.asarray(kinds, dtype=object),
            "error": np.asarray(errors, dtype=object),
        }

    def run_task(self, task: int) -> int:
        """Protect one task's rows and write them; return the number of rows."""
        shard_idx, start, stop = self.config.tasks[task]
        shard = self.shards[shard_idx]
        if done_marker(self.out_dir, task).exists():  # a retry of a task that finished
            return stop - start
        # Ray restarts a dead actor and retries its task without bound; the bound is kept here
        attempt = record_attempt(self.out_dir, task)
        if attempt > self.config.max_attempts:
            raise TaskAbandonedError(
                f"task {task} ({shard.name}, rows {start}:{stop}) was started {attempt - 1} times and its worker "
                f"died each time (out of memory? a crash?); the run ends after max_retries = "
                f"{self.config.max_attempts - 1} retries. Fix the cause and run again to resume."
            )
        target = self.out_dir / WORK / shard.name
        if stop == start:  # an empty shard: its (preallocated or copied) output is the input
            if self.config.fmt == "parquet":
                g.write_parquet_atomic(target, g.read_parquet_table(self.in_dir, shard, self.config.feature_column)[0])
        elif self.config.fmt == "npy":
            features, ids = g.read_npy_rows(self.in_dir, shard, start, stop, self.dim)
            protected = self.protector(features, row_ids=ids)
            g.write_npy_rows(target, shard.rows, start, np.asarray(protected, dtype=features.dtype))
        else:
            table, features = g.read_parquet_table(self.in_dir, shard, self.config.feature_column, self.dim)
            ids = g.seed_ids(table.column(self.config.id_column).to_numpy(zero_copy_only=False))
            protected = self.protector(features, row_ids=ids)
            g.write_parquet_atomic(target, g.replace_feature_column(table, self.config.feature_column, protected))
        mark_done(self.out_dir, task, self.node)
        return stop - start
