"""Protect a sharded gallery on a Ray cluster: :func:`protect_distributed`.

The pipeline is a Ray Data dataset of *tasks* (row ranges of shards) mapped by ``map_batches``
over an actor pool of :class:`~advface_fast.distributed.worker.ProtectWorker`: each actor loads the
models once and holds one GPU (or ``cpus_per_worker`` cores); Ray schedules tasks as actors free
up, restarts an actor that dies and retries its task. The rows themselves go from the shared file
system to the actor and back, not through Ray's object store, so that every output row has one
place fixed by the plan: output shards mirror input shards one to one, a retried task rewrites
the same bytes, and a re-run resumes task by task. (Ray Data's own ``write_parquet`` names its
files per block, which makes neither of those hold.)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..optional import import_optional
from ..settings import RunSettings
from . import gallery as g
from .run_state import WORK, clear_attempts, open_run, pending_tasks, publish
from .worker import REPORTED_ERROR_TYPES, ProtectWorker, WorkerConfig

DEFAULT_ROWS_PER_TASK = 65_536
_PREPARED = "prepared"


@dataclass(frozen=True)
class DistributedResult:
    """What a run did: ``rows`` protected in ``seconds`` by ``workers`` actors (``tasks_run`` of the
    plan's ``tasks``; the rest were done by an earlier, interrupted run)."""

    out_dir: Path
    format: str
    shards: int
    rows: int
    tasks: int
    tasks_run: int
    workers: int
    device: str
    seconds: float
    nodes: int = 0  # distinct Ray nodes that ran the tasks (of this run and any it resumed)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _import_ray() -> Any:
    import_optional("ray.data", "protect_distributed (Ray Data)")
    return import_optional("ray")


def _plan(fmt: str, shards: list[g.Shard], rows_per_task: int) -> list[list[int]]:
    """``[shard, start, stop]`` per task: row ranges of ``.npy`` shards, whole Parquet files."""
    tasks = []
    for i, s in enumerate(shards):
        step = rows_per_task if fmt == "npy" else max(s.rows, 1)
        tasks += [[i, a, min(a + step, s.rows)] for a in range(0, s.rows, step)]
        if s.rows == 0:
            tasks.append([i, 0, 0])
    return tasks


def _outputs(fmt: str, shards: list[g.Shard]) -> list[str]:
    if fmt == "parquet":
        return [s.name for s in shards]
    return [n for s in shards for n in (s.name, g.ids_name(s.name))]


def _prepare(out_dir: Path, in_dir: Path, fmt: str, shards: list[g.Shard]) -> None:
    """Preallocate the ``.npy`` outputs and write the id files (before any task can run)."""
    work = out_dir / WORK
    if (work / _PREPARED).exists() or fmt != "npy":
        (work / _PREPARED).touch()
        return
    for s in shards:
        g.create_npy_output(work / s.name, s.rows, s.dim, s.dtype)
        g.write_ids(work / g.ids_name(s.name), s, in_dir)
    (work / _PREPARED).touch()


def _model_arg(ray: Any, model: Any) -> Any:
    """A path stays a path (each worker loads it); anything else is put in the object store."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return None if model is None else str(model)
    return ray.put(model)


def _resources(
    ray: Any, gpus_per_worker: float | None, cpus_per_worker: float, workers: int | None
) -> tuple[float, int]:
    total = ray.cluster_resources()
    gpus = total.get("GPU", 0.0)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if gpus_per_worker > gpus:
        raise ValueError(f"gpus_per_worker={gpus_per_worker} but the Ray cluster has {gpus:g} GPUs")
    if workers is None:
        per = gpus / gpus_per_worker if gpus_per_worker else total.get("CPU", 1.0) / cpus_per_worker
        workers = max(1, int(per))
    return gpus_per_worker, workers


# the settings the run manifest records as given (the key by its id, the rotation beside them); a
# resumed run must match them
_MANIFEST_SETTINGS = ("eps", "alpha", "steps", "start", "renorm", "backend", "precision", "seed")


def protect_distributed(
    in_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    decoder: Any,
    encoder: Any = None,
    *,
    settings: RunSettings | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    gpus_per_worker: float | None = None,
    rows_per_task: int = DEFAULT_ROWS_PER_TASK,
    feature_column: str = "feature",
    id_column: str = "id",
    address: str | None = None,
    overwrite: bool = False,
    resume: bool = True,
    max_retries: int = 3,
    reprotect: bool = False,
    _worker_cls: type = ProtectWorker,
    **keywords: Any,
) -> DistributedResult:
    """Protect the sharded gallery in ``in_dir`` on a Ray cluster; write it to ``out_dir``.

    Each row gets exactly what :func:`~advface_fast.protect` gives it with
    ``row_ids=seed_ids(ids)``, whatever the sharding, batching or number of workers.

    Args:
        in_dir: folder of ``.npy`` shards ``(N_i, D)`` (ids from ``<stem>.ids.npy`` sidecars, else
            gallery positions) or of Parquet shards (``feature_column``: list of ``D`` floats,
            ``id_column``: integer or string ids); see :mod:`advface_fast.distributed.gallery`.
            Must be readable by every node (shared file system).
        out_dir: new or empty folder (or an interrupted run's) for the protected shards: the same
            file names, row order, dtypes and other columns; ``.npy`` galleries also get
            ``<stem>.ids.npy``. Must be writable by every node.
        decoder: the shadow decoder, an ``nn.Module`` or a ``.safetensors`` path (paths are
            loaded by each worker; give paths on a shared file system for a cluster).
        encoder: ``None`` (fine for ``start="random"``), an ``nn.Module``, or a model path.
        settings, **keywords: the run's :class:`~advface_fast.settings.RunSettings` (eps, alpha,
            steps, start, renorm, backend, precision, seed, key, rotate, shards, batch_size, progress), as
            for :class:`~advface_fast.Protector`; ``device`` is refused (each worker uses its
            GPU, or the CPU: ``gpus_per_worker``). The key's bytes travel to the workers with their
            configuration (Ray's object store); the run manifest records only its key id.
        workers: actors in the pool (default: one per GPU, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs (and torch threads) per actor.
        gpus_per_worker: GPUs per actor (default 1 when the cluster has GPUs, else 0).
        rows_per_task: rows of an ``.npy`` shard per task (a Parquet file is one task).
        feature_column, id_column: Parquet column names.
        address: Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``); default: the
            running Ray instance, or a local one started (and stopped) here.
        overwrite: replace a complete earlier run in ``out_dir``.
        resume: continue an interrupted run in ``out_dir`` (same input and settings only);
            ``False`` discards it.
        max_retries: restarts of a dead worker and retries of its task before the run fails.
        reprotect: accept an input folder whose provenance says it is protected (refused by default).

    Returns:
        :class:`DistributedResult` (rows, seconds, workers, ...).

    Raises:
        GalleryFormatError: a shard is unreadable, of another dimension, or holds NaN/Inf
            (the message names the file); nothing is published.
        ResumeMismatchError / FileExistsError: ``out_dir`` holds another run or other files.
    """
    from ..encoders.base import encoder_fingerprint
    from ..models.fingerprint import module_fingerprint
    from ..models.serialization import load_model
    from ..protect_checks import in_dim
    from ..protector import Protector

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if isinstance(rows_per_task, bool) or not isinstance(rows_per_task, int) or rows_per_task < 1:
        raise ValueError(f"rows_per_task must be a positive integer, got {rows_per_task!r}")
    if cpus_per_worker <= 0:
        raise ValueError(f"cpus_per_worker must be positive, got {cpus_per_worker!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if out_dir.resolve() == in_dir.resolve():
        raise ValueError(f"out_dir is the input folder ({in_dir}); write to another folder")
    run_settings = RunSettings.of(settings, **keywords)
    if run_settings.device is not None:
        raise ValueError("protect_distributed chooses each worker's device; use gpus_per_worker, not device=")
    kwargs = {name: getattr(run_settings, name) for name in _MANIFEST_SETTINGS}
    from ..keys import key_id, load_key

    secret = load_key(run_settings.key) if run_settings.key is not None else None
    rotate = bool(run_settings.rotate)
    dec_module = load_model(decoder) if isinstance(decoder, (str, os.PathLike)) else decoder
    checker = Protector(dec_module, encoder, settings=run_settings, key=secret, progress=False)  # validates
    if run_settings.start == "shadow" and checker.encoder is None:
        raise ValueError('start="shadow" needs an encoder; pass encoder=... or use start="random"')

    from .. import provenance

    input_record = provenance.refuse_protected_input(in_dir, reprotect)  # a protected run folder: refused
    fmt, shards = g.scan_gallery(in_dir, feature_column, id_column)
    dim = next((s.dim for s in shards if s.dim >= 0), None)
    expected = in_dim(dec_module)
    if dim is not None and expected is not None and dim != expected:
        raise g.GalleryFormatError(f"the shards in {in_dir} have dimension {dim} but the decoder expects {expected}")
    run = {
        **kwargs,
        "key": key_id(secret) if secret is not None else None,
        "rotate": rotate,
        **({"key_shards": run_settings.shards} if run_settings.shards > 1 else {}),  # absent: one rotation
        "decoder": module_fingerprint(dec_module),
        "encoder": encoder_fingerprint(checker.encoder),
        "format": fmt,
        "feature_column": feature_column if fmt == "parquet" else None,
        "id_column": id_column if fmt == "parquet" else None,
        "shards": [s.to_json() for s in shards],
    }
    manifest, _ = open_run(
        out_dir, run, _plan(fmt, shards, rows_per_task), _outputs(fmt, shards), overwrite=overwrite, resume=resume
    )
    tasks = manifest["tasks"]
    _prepare(out_dir, in_dir, fmt, shards)
    pending = pending_tasks(out_dir, tasks)
    clear_attempts(out_dir)
    total_rows = sum(s.rows for s in shards)
    t0 = time.perf_counter()
    n_workers, device = 0, "cpu"
    if pending:
        n_workers, device = _run_tasks(
            pending,
            tasks,
            WorkerConfig(
                in_dir=str(in_dir.resolve()),
                out_dir=str(out_dir.resolve()),
                fmt=fmt,
                shards=run["shards"],
                tasks=tasks,
                decoder=decoder,
                encoder=encoder,
                protect_kwargs={
                    **kwargs,
                    "batch_size": run_settings.batch_size,
                    "key": secret,
                    "rotate": rotate,
                    "shards": run_settings.shards,
                },
                feature_column=feature_column,
                id_column=id_column,
            ),
            worker_cls=_worker_cls,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker,
            address=address,
            progress=run_settings.progress,
            total_rows=total_rows,
            max_retries=max_retries,
        )
    left = pending_tasks(out_dir, tasks)
    if left:
        raise RuntimeError(
            f"{len(left)} of {len(tasks)} tasks did not finish (first: {tasks[left[0]]}); re-run to resume"
        )
    nodes = publish(out_dir, manifest)
    if dim is not None:  # the run folder's provenance: what protect() writes beside a file
        record = checker.provenance(total_rows, dim, input_record)
        record["source"] = {**(record.get("source") or {}), "shards": len(shards), "format": fmt}
        provenance.write(out_dir, record)
    return DistributedResult(
        out_dir,
        fmt,
        len(shards),
        total_rows,
        len(tasks),
        len(pending),
        n_workers,
        device,
        time.perf_counter() - t0,
        len(nodes),
    )


def _run_tasks(
    pending: list[int],
    tasks: list[list[int]],
    config: WorkerConfig,
    *,
    worker_cls: type,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float | None,
    address: str | None,
    progress: bool,
    total_rows: int,
    max_retries: int,
) -> tuple[int, str]:
    """Run the pending tasks through Ray Data's actor pool; return ``(workers, device)``."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        # no address: $RAY_ADDRESS (a Ray job's cluster), else a new local instance, never the
        # cluster a stale /tmp/ray/ray_current_cluster names (Ray's own default would try it)
        where = address or os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=where, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts rows; Ray's would count blocks
        ctx.print_on_execution_start = False
        # modules go to the object store once; the refs live until the run ends (actor restarts)
        config.decoder, config.encoder = (_model_arg(ray, m) for m in (config.decoder, config.encoder))
        gpus, n_workers = _resources(ray, gpus_per_worker, cpus_per_worker, workers)
        config.device = "cuda" if gpus > 0 else "cpu"
        config.threads = max(1, int(cpus_per_worker))
        # Ray Data restarts a dead actor and retries its task without bound (and 2.60 deprecates
        # passing max_restarts / max_task_retries): the workers count each task's starts on the
        # shared file system and end the run when a task has killed its worker max_retries + 1 times
        config.max_attempts = max_retries + 1
        n_workers = min(n_workers, len(pending))
        ds = ray.data.from_items([{"task": t} for t in pending], override_num_blocks=len(pending))
        ds = ds.map_batches(
            worker_cls,
            fn_constructor_kwargs={"config": config},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus,
        )
        done_before = total_rows - sum(tasks[t][2] - tasks[t][1] for t in pending)
        with tqdm(
            total=total_rows,
            initial=done_before,
            unit="row",
            desc=f"protect ({n_workers} workers)",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar:
            data_logger = logging.getLogger("ray.data")
            level = data_logger.level
            data_logger.setLevel(logging.ERROR)  # per-dataset INFO lines would break the bar
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for kind, message in zip(batch["error_kind"], batch["error"], strict=True):
                        if kind:
                            raise REPORTED_ERROR_TYPES.get(kind, RuntimeError)(message)
                    bar.update(int(batch["rows"].sum()))
            finally:
                data_logger.setLevel(level)
        return n_workers, config.device
    finally:
        if started:
            ray.shutdown()
