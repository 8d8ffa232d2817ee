"""protect-distributed on a real two-node Ray cluster on loopback, started as the README says: token
authentication on, a head node with 2 CPUs and a worker node with 1, the command run by address.
Its output must equal single-process protect, its tasks must run on both nodes, and killing the
worker node mid-run must still end in the identical output. Every Ray process the test starts is
killed at the end (each node is started in its own session, killed as a process group)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the two-node test needs the ray extra")

from helpers import write_key

import advface_fast as af

BIN = Path(sys.executable).parent
KEY = b"two-node-test-key-not-a-secret!!"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args: list[str], env: dict[str, str]) -> int:
    """``ray start ARGS`` in a new session; returns the session's process group id."""
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=180)
    if proc.returncode != 0:
        _kill(proc.pid)
        pytest.skip(f"Ray cannot start a node here: {out.strip().splitlines()[-1] if out.strip() else proc.returncode}")
    return proc.pid


def _kill(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _python(code: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)


NODES = """
import json, ray
ray.init(address="{addr}", log_to_driver=False, configure_logging=False)
print(json.dumps([[n["NodeID"], n["NodeManagerPort"]] for n in ray.nodes() if n["Alive"]]))
"""


@pytest.fixture(scope="module")
def cluster():
    token = secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PYTHONWARNINGS": "ignore"}
    gcs, head_nm, worker_nm = _free_port(), _free_port(), _free_port()
    addr = f"127.0.0.1:{gcs}"
    groups = []
    try:
        head = ["--head", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=false"]
        groups.append(_start_node([*head, f"--node-manager-port={head_nm}"], env))
        groups.append(_start_node([f"--address={addr}", "--num-cpus=1", f"--node-manager-port={worker_nm}"], env))
        deadline, nodes = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            res = _python(NODES.format(addr=addr), env)
            nodes = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else []
            if len(nodes) == 2:
                break
            time.sleep(1)
        assert len(nodes) == 2, f"the worker node did not join: {nodes}"
        worker_node = next(n for n, port in nodes if port == worker_nm)
        yield {"addr": addr, "env": env, "worker_group": groups[1], "worker_node": worker_node}
    finally:
        for g in groups:
            _kill(g)
        # Ray names the last cluster it started here; a later ray.init() must not look for this one
        current = Path("/tmp/ray/ray_current_cluster")
        if current.is_file() and current.read_text().strip().endswith(f":{gcs}"):
            current.unlink()


def _gallery(root: Path, rows: int, shards: int, seed: int) -> np.ndarray:
    root.mkdir(parents=True)
    z = np.random.default_rng(seed).standard_normal((rows, 128)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    for i, part in enumerate(np.array_split(z, shards)):
        np.save(root / f"part-{i}.npy", part)
    return z


def _command(cluster, src: Path, dst: Path, decoder: Path, key: Path) -> list[str]:
    return [
        str(BIN / "advface-fast"), "protect-distributed", str(src), str(dst), "--decoder", str(decoder),
        "--key-file", str(key), "--address", cluster["addr"], "--workers", "3", "--rows-per-task", "250",
        "--no-progress",
    ]  # fmt: skip


def _output(dst: Path, shards: int) -> np.ndarray:
    return np.concatenate([np.load(dst / f"part-{i}.npy") for i in range(shards)])


def test_a_driver_without_the_token_is_refused(cluster):
    env = {k: v for k, v in cluster["env"].items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    env["HOME"] = "/nonexistent"  # no default token file either
    res = _python(NODES.format(addr=cluster["addr"]), env, timeout=120)
    assert res.returncode != 0 and "auth" in (res.stdout + res.stderr).lower()


def test_two_nodes_equal_protect_and_survive_losing_the_worker_node(cluster, tmp_path):
    decoder = tmp_path / "dec.safetensors"
    af.save_model(af.load_default().shadow, decoder)
    key = tmp_path / "k.key"
    write_key(key, KEY)
    dec = af.load_model(decoder)

    # 1. both nodes take tasks, and the result is single-process protect's
    z = _gallery(tmp_path / "in", 8000, 4, seed=0)
    res = subprocess.run(
        _command(cluster, tmp_path / "in", tmp_path / "out", decoder, key),
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "2 nodes" in res.stderr
    manifest = json.loads((tmp_path / "out" / "_advface_run.json").read_text())
    assert manifest["status"] == "complete" and cluster["worker_node"] in manifest["nodes"]
    assert len(manifest["nodes"]) == 2
    np.testing.assert_array_equal(_output(tmp_path / "out", 4), af.protect(z, dec, key=KEY, progress=False))

    # 2. the worker node is killed (every process of it) once it has finished a task, mid-run
    z2 = _gallery(tmp_path / "in2", 12000, 4, seed=1)
    done = tmp_path / "out2" / ".work" / "done"
    run = subprocess.Popen(
        _command(cluster, tmp_path / "in2", tmp_path / "out2", decoder, key),
        env=cluster["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, killed_with = time.monotonic() + 300, None
        while time.monotonic() < deadline and run.poll() is None:
            markers = [f for f in done.glob("*") if f.suffix != ".tmp"] if done.is_dir() else []
            if any(f.read_text() == cluster["worker_node"] for f in markers):
                _kill(cluster["worker_group"])
                killed_with = len(markers)
                break
            time.sleep(0.2)
        out, _ = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert killed_with is not None, "the worker node never finished a task"
    assert killed_with < 48, "the run was over before the kill: nothing was tested"
    assert run.returncode == 0, out[-2000:]
    np.testing.assert_array_equal(_output(tmp_path / "out2", 4), af.protect(z2, dec, key=KEY, progress=False))
