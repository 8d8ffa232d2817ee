"""The Ray Data pipeline, run for real on a local Ray instance with 2 CPU workers (not mocked).

Every run is compared row for row with the single-process :func:`advface_fast.protect` of the
whole gallery (``row_ids=seed_ids(ids)``), for different shardings and task sizes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_protection, make_pair, unit_rows

import advface_fast as af
from advface_fast import provenance
from advface_fast.cli import main
from advface_fast.distributed import protect_distributed, scan_gallery, seed_ids
from advface_fast.distributed.run_state import MANIFEST, WORK
from advface_fast.distributed.worker import ProtectWorker
from advface_fast.errors import GalleryFormatError, ResumeMismatchError

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DIM = 24
N = 300

# the workers cannot import the test modules: send this one's worker subclasses and the helpers'
# registered LinearEncoder by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
ray.cloudpickle.register_pickle_by_value(sys.modules["helpers"])


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance with 2 CPUs for the module (starting one costs ~5 s)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup():
    dec, _ = make_pair(DIM)
    x = unit_rows(N, DIM, seed=7)
    return dec, x


def _write_npy_shards(root: Path, x: np.ndarray, cuts: list[int], ids: np.ndarray | None = None) -> list[str]:
    root.mkdir(parents=True)
    names = []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(x)], strict=True)):
        name = f"part-{i:03d}.npy"
        np.save(root / name, x[a:b])
        if ids is not None:
            np.save(root / f"part-{i:03d}.ids.npy", ids[a:b])
        names.append(name)
    return names


def _read_npy_out(root: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    feats = np.concatenate([np.load(root / n) for n in names])
    ids = np.concatenate([np.load(root / n.replace(".npy", ".ids.npy")) for n in names])
    return feats, ids


def _write_parquet_shards(root: Path, x: np.ndarray, ids: list[str], cuts: list[int], column_type: str) -> list[str]:
    root.mkdir(parents=True)
    names = []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(x)], strict=True)):
        flat = pa.array(x[a:b].reshape(-1))
        if column_type == "list":
            col = pa.FixedSizeListArray.from_arrays(flat, DIM).cast(pa.list_(pa.float32()))
        elif column_type == "tensor":
            col = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(x[a:b]))
        else:
            col = pa.FixedSizeListArray.from_arrays(flat, DIM)
        table = pa.table(
            {"id": pa.array(ids[a:b]), "feature": col, "camera": pa.array([f"cam{j % 3}" for j in range(a, b)])}
        )
        name = f"shard-{i:02d}.parquet"
        pq.write_table(table, root / name)
        names.append(name)
    return names


# -- no Ray needed -------------------------------------------------------------------------------
def test_seed_ids_integers_pass_through_strings_hash_stably():
    ints = np.array([0, 5, 2**40], dtype=np.uint64)
    np.testing.assert_array_equal(seed_ids(ints), ints.astype(np.int64))
    s = seed_ids(np.array(["alice", "bob", "alice"]))
    assert s.dtype == np.int64 and s[0] == s[2] != s[1] and (s >= 0).all()
    assert seed_ids(["alice"])[0] == s[0]  # a row's key depends on its id only
    with pytest.raises(ValueError, match="non-negative"):
        seed_ids(np.array([-1, 2]))
    with pytest.raises(ValueError, match="integers or strings"):
        seed_ids(np.array([0.5]))


def test_scan_rejects_bad_galleries(tmp_path):
    x = unit_rows(10, DIM)
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed/a.npy", x)
    pq.write_table(pa.table({"id": [1], "feature": [[1.0]]}), tmp_path / "mixed/b.parquet")
    with pytest.raises(GalleryFormatError, match="mixes"):
        scan_gallery(tmp_path / "mixed")

    (tmp_path / "dims").mkdir()
    np.save(tmp_path / "dims/a.npy", x)
    np.save(tmp_path / "dims/b.npy", unit_rows(10, DIM + 1))
    with pytest.raises(GalleryFormatError, match=r"different feature dimensions .*b\.npy: 25"):
        scan_gallery(tmp_path / "dims")

    (tmp_path / "sidecar").mkdir()
    np.save(tmp_path / "sidecar/a.npy", x)
    np.save(tmp_path / "sidecar/a.ids.npy", np.arange(10))
    np.save(tmp_path / "sidecar/b.npy", x)
    with pytest.raises(GalleryFormatError, match=r"missing for b\.npy"):
        scan_gallery(tmp_path / "sidecar")

    (tmp_path / "nocol").mkdir()
    pq.write_table(pa.table({"key": [1], "feature": [[1.0]]}), tmp_path / "nocol/a.parquet")
    with pytest.raises(GalleryFormatError, match=r"a\.parquet has no column 'id'"):
        scan_gallery(tmp_path / "nocol")

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.npy or \.parquet shards"):
        scan_gallery(tmp_path / "empty")


def test_wrong_dimension_fails_before_anything_is_written(tmp_path, setup):
    dec, _ = setup
    _write_npy_shards(tmp_path / "in", unit_rows(20, DIM + 3), [10])
    with pytest.raises(GalleryFormatError, match="dimension 27 but the decoder expects 24"):
        protect_distributed(tmp_path / "in", tmp_path / "out", dec, progress=False)
    assert not (tmp_path / "out").exists()


# -- on Ray --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("error::ray.util.annotations.RayDeprecationWarning")  # no deprecated Ray API
def test_npy_shardings_equal_single_process(tmp_path, setup, local_ray):
    dec, x = setup
    ref = af.protect(x, dec, progress=False)  # row ids 0..N-1 = gallery positions
    # b: an empty shard (60:60) among them
    for label, cuts, rows_per_task in (("a", [120], 50), ("b", [60, 60, 61, 200, 240], 1000)):
        names = _write_npy_shards(tmp_path / f"in-{label}", x, cuts)
        res = protect_distributed(
            tmp_path / f"in-{label}",
            tmp_path / f"out-{label}",
            dec,
            workers=2,
            rows_per_task=rows_per_task,
            progress=False,
        )
        assert (res.rows, res.shards, res.workers, res.tasks_run) == (N, len(names), 2, res.tasks)
        feats, ids = _read_npy_out(tmp_path / f"out-{label}", names)
        assert_same_protection(feats, ref)
        np.testing.assert_array_equal(ids, np.arange(N))
        assert not (tmp_path / f"out-{label}" / WORK).exists()
        assert json.loads((tmp_path / f"out-{label}" / MANIFEST).read_text())["status"] == "complete"


def test_npy_sidecar_ids_key_the_noise_and_survive(tmp_path, setup, local_ray):
    dec, x = setup
    ids = np.random.default_rng(0).permutation(10**6)[:N].astype(np.int64)
    names = _write_npy_shards(tmp_path / "in", x, [100, 230], ids)
    protect_distributed(tmp_path / "in", tmp_path / "out", dec, rows_per_task=64, progress=False)
    feats, out_ids = _read_npy_out(tmp_path / "out", names)
    np.testing.assert_array_equal(out_ids, ids)
    assert_same_protection(feats, af.protect(x, dec, row_ids=ids, progress=False))
    assert np.abs(feats - af.protect(x, dec, progress=False)).max() > 1e-3  # the ids did key the noise
    record = provenance.read(tmp_path / "out")  # the run folder says what made it
    assert record["kind"] == "protected" and record["rows"] == N and record["protection"]["transform"]["name"] == "none"
    with pytest.raises(ValueError, match="already protected"):  # a protected run folder is not protected again
        protect_distributed(tmp_path / "out", tmp_path / "out2", dec, rows_per_task=64, progress=False)


def test_shard_keys_reach_the_workers(tmp_path, setup, local_ray):
    """Each worker rotates its rows by their ids' shard keys, as one process does, and the run
    folder's provenance names them (a run under one rotation would not match its provenance)."""
    dec, x = setup
    key = b"test-key-distributed-shards-0123"
    ids = np.random.default_rng(1).permutation(10**6)[:N].astype(np.int64)
    names = _write_npy_shards(tmp_path / "in", x, [140], ids)
    kw = {"key": key, "rotate": True, "shards": 4, "progress": False}
    protect_distributed(tmp_path / "in", tmp_path / "out", dec, rows_per_task=64, **kw)
    feats, _ = _read_npy_out(tmp_path / "out", names)
    assert_same_protection(feats, af.protect(x, dec, row_ids=ids, **kw))
    assert np.abs(feats - af.protect(x, dec, row_ids=ids, key=key, rotate=True, progress=False)).max() > 1e-2
    transform = provenance.read(tmp_path / "out")["protection"]["transform"]
    assert (transform["name"], transform["shards"]) == ("shard-rotation", 4)
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["run"]["key_shards"] == 4  # resume checks it


@pytest.mark.parametrize("column_type", ["fixed", "list", "tensor"])
def test_parquet_shardings_equal_single_process(tmp_path, setup, local_ray, column_type):
    dec, x = setup
    ids = [f"person-{i * 7919 % 1000:04d}-{i}" for i in range(N)]
    ref = af.protect(x, dec, row_ids=seed_ids(np.array(ids)), progress=False)
    shardings = [[150], [40, 41, 250]] if column_type == "fixed" else [[100]]
    for k, cuts in enumerate(shardings):
        src, dst = tmp_path / f"in{k}", tmp_path / f"out{k}"
        names = _write_parquet_shards(src, x, ids, cuts, column_type)
        protect_distributed(src, dst, dec, progress=False)
        assert sorted(p.name for p in dst.glob("*.parquet")) == names
        tables = [pq.read_table(dst / n) for n in names]
        for n, t in zip(names, tables, strict=True):
            assert t.schema == pq.read_table(src / n).schema
        table = pa.concat_tables(tables)
        assert table.column("id").to_pylist() == ids
        assert table.column("camera").to_pylist() == [f"cam{j % 3}" for j in range(N)]
        col = table.column("feature").combine_chunks()
        col = col.storage if isinstance(col.type, pa.BaseExtensionType) else col
        feats = col.flatten().to_numpy().reshape(N, DIM)
        assert_same_protection(feats, ref)


def test_shadow_start_with_an_encoder_module(tmp_path, local_ray):
    """The paper's start E(S(z)) needs the encoder in every worker (sent through the object store)."""
    dec, enc = make_pair(DIM, seed=3)
    x = unit_rows(120, DIM, seed=11)
    names = _write_npy_shards(tmp_path / "in", x, [70])
    protect_distributed(tmp_path / "in", tmp_path / "out", dec, enc, start="shadow", rows_per_task=40, progress=False)
    feats, _ = _read_npy_out(tmp_path / "out", names)
    assert_same_protection(feats, af.protect(x, dec, enc, start="shadow", progress=False))
    with pytest.raises(ValueError, match="needs an encoder"):
        protect_distributed(tmp_path / "in", tmp_path / "out2", dec, start="shadow", progress=False)


def test_nan_shard_fails_naming_the_file_and_publishes_nothing(tmp_path, setup, local_ray):
    dec, x = setup
    bad = x.copy()
    bad[205, 3] = np.nan
    _write_npy_shards(tmp_path / "in", bad, [100, 200])
    with pytest.raises(GalleryFormatError, match=r"part-002\.npy holds NaN or Inf, first at row 5"):
        protect_distributed(tmp_path / "in", tmp_path / "out", dec, rows_per_task=50, progress=False)
    assert not list((tmp_path / "out").glob("*.npy"))  # nothing published
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["status"] == "running"


class DyingWorker(ProtectWorker):
    """Dies (the whole actor process, no cleanup) half-way through writing task 1, once."""

    def run_task(self, task: int) -> int:
        flag = Path(self.config.out_dir).parent / "died-once"
        if task == 1 and not flag.exists():
            flag.touch()
            shard_idx, start, stop = self.config.tasks[task]
            target = Path(self.config.out_dir) / WORK / self.shards[shard_idx].name
            junk = np.full(((stop - start) // 2, DIM), 123.0, dtype=np.float32)
            from advface_fast.distributed.gallery import write_npy_rows

            write_npy_rows(target, self.shards[shard_idx].rows, start, junk)
            os._exit(1)
        return super().run_task(task)


def test_worker_killed_mid_task_is_retried_and_output_is_identical(tmp_path, setup, local_ray):
    dec, x = setup
    names = _write_npy_shards(tmp_path / "in", x, [150])
    res = protect_distributed(
        tmp_path / "in", tmp_path / "out", dec, workers=2, rows_per_task=50, progress=False, _worker_cls=DyingWorker
    )
    assert (tmp_path / "died-once").exists()  # the worker did die
    assert res.tasks_run == res.tasks == 6
    feats, _ = _read_npy_out(tmp_path / "out", names)
    assert_same_protection(feats, af.protect(x, dec, progress=False))


class AlwaysDyingWorker(ProtectWorker):
    """Dies while protecting task 0, every time: a shard that kills its worker (out of memory, a
    crash), after the task's bookkeeping as a real crash would."""

    def __init__(self, config):
        super().__init__(config)
        protector, self.task = self.protector, None
        self.protector = lambda features, **kw: os._exit(1) if self.task == 0 else protector(features, **kw)

    def run_task(self, task: int) -> int:
        self.task = task
        return super().run_task(task)


def test_a_task_that_always_kills_its_worker_ends_the_run(tmp_path, setup, local_ray):
    dec, x = setup
    _write_npy_shards(tmp_path / "in", x, [150])
    with pytest.raises(RuntimeError, match=r"started 2 times and its worker died each time"):
        protect_distributed(
            tmp_path / "in",
            tmp_path / "out",
            dec,
            rows_per_task=100,
            max_retries=1,
            progress=False,
            _worker_cls=AlwaysDyingWorker,
        )
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["status"] == "running"  # nothing published


class InterruptedWorker(ProtectWorker):
    """Fails on the last task once every other task is done: a run interrupted at a known point."""

    def run_task(self, task: int) -> int:
        last = len(self.config.tasks) - 1
        if task == last:
            from advface_fast.distributed.run_state import done_marker

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                done_marker(Path(self.config.out_dir), t).exists() for t in range(last)
            ):
                time.sleep(0.05)
            raise RuntimeError("injected interruption")
        return super().run_task(task)


def test_rerun_resumes_same_settings_and_refuses_others(tmp_path, setup, local_ray):
    dec, x = setup
    names = _write_npy_shards(tmp_path / "in", x, [150])
    src, dst = tmp_path / "in", tmp_path / "out"
    with pytest.raises(Exception, match="injected interruption"):
        protect_distributed(src, dst, dec, rows_per_task=50, progress=False, _worker_cls=InterruptedWorker)
    with pytest.raises(ResumeMismatchError, match="differs in: eps"):
        protect_distributed(src, dst, dec, eps=0.05, rows_per_task=50, progress=False)
    res = protect_distributed(src, dst, dec, rows_per_task=999, progress=False)  # the stored plan is kept
    assert (res.tasks, res.tasks_run) == (6, 1)
    feats, _ = _read_npy_out(dst, names)
    assert_same_protection(feats, af.protect(x, dec, progress=False))
    with pytest.raises(FileExistsError, match="already holds a complete"):
        protect_distributed(src, dst, dec, progress=False)
    res = protect_distributed(src, dst, dec, overwrite=True, progress=False)
    assert res.tasks_run == res.tasks
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and holds no advface run"):
        protect_distributed(src, tmp_path / "other", dec, progress=False)


def test_cli_protect_distributed(tmp_path, setup, local_ray, capsys):
    dec, x = setup
    af.save_model(dec, tmp_path / "shadow.safetensors")
    names = _write_npy_shards(tmp_path / "in", x, [200])
    args = ["protect-distributed", str(tmp_path / "in"), str(tmp_path / "out"), "--decoder"]
    args += [str(tmp_path / "shadow.safetensors"), "--workers", "2", "--rows-per-task", "80", "--no-progress"]
    assert main(args) == 0
    assert "wrote 300 rows in 2 shards" in capsys.readouterr().err
    feats, _ = _read_npy_out(tmp_path / "out", names)
    assert_same_protection(feats, af.protect(x, dec, progress=False))
    assert main(args) == 2  # complete: refused without --overwrite
    assert "already holds a complete" in capsys.readouterr().err
