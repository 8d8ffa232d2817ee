"""Load test of the service's decisions on loopback: p50/p99 latency and throughput of
``/verify`` and ``/identify`` at 1, 8 and 64 concurrent clients against galleries of 10k and 1M
protected templates, beside ``/protect``, in one run.

Each gallery is built by ``advface-fast index`` (FAISS ``Flat``, the shipped 128-d decoder,
default settings + the keyed rotation) from random unit templates: matching cost does not depend
on what the templates are. The server is ``advface-fast serve --gallery`` as operators run it
(one protecting replica, the keeper replica that owns the gallery; budgets off so the load is not
refused), started as its own process; the clients run in another process (``--client``), each
thread one keep-alive connection, one probe per request (JSON), bounded by ``--requests`` per
level and ``--seconds``. Client and server share the machine's cores: read the numbers side by side.

    PYTHONPATH=benchmarks python benchmarks/match_load.py --json benchmarks/results/match_load_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from load_clients import probe_templates, run_clients, wait_healthy
from machine import cpu_model

LEVELS = (1, 8, 64)
SIZES = (10_000, 1_000_000)
ENDPOINTS = ("verify", "identify", "protect")
PORT = 8766


def _client(url: str, api_key: str, endpoint: str, concurrency: int, requests: int, seconds: float, n: int) -> dict:
    from advface_fast.deploy.client import ServiceClient

    z = probe_templates(concurrency)

    def call(c: ServiceClient, i: int) -> None:
        if endpoint == "verify":
            c.verify(z[i % 256], str(i * 7919 % n))
        elif endpoint == "identify":
            c.identify(z[i % 256])
        else:
            c.protect(z[i % 256], np.array([i]))

    res = run_clients(lambda: ServiceClient(url, api_key), call, concurrency, requests, seconds)
    res["requests_per_s"] = res.pop("per_s")
    return {"endpoint": endpoint, **res}


def _build_gallery(tmp: Path, n: int, shadow: Path) -> tuple[Path, float]:
    rng = np.random.default_rng(n)
    z = rng.standard_normal((n, 128)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.save(tmp / f"g{n}.npy", z)
    del z
    t = time.time()
    cmd = [sys.executable, "-m", "advface_fast", "index", str(tmp / f"g{n}.npy"), str(tmp / f"g{n}.faiss"),
           "--decoder", str(shadow), "--key-file", str(tmp / "key"), "--deployment", str(tmp / "deployment.json"),
           "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True)
    return tmp / f"g{n}.faiss", time.time() - t


def _serve(tmp: Path, gallery: Path, shadow: Path, n: int, args: argparse.Namespace) -> list[dict]:
    cmd = [sys.executable, "-m", "advface_fast", "serve", "--decoder", str(shadow), "--key-file", str(tmp / "key"),
           "--api-key-file", str(tmp / "api"), "--port", str(PORT), "--gallery", str(gallery),
           "--deployment", str(tmp / "deployment.json"), "--identity-budget", "none", "--key-budget", "none",
           "--audit-log", str(tmp / f"audit{n}.jsonl")]  # fmt: skip
    server = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{PORT}"
    t = time.time()
    try:
        wait_healthy(url, server, timeout=600)
        up = time.time() - t
        out = []
        for endpoint in ENDPOINTS:
            for level in LEVELS:
                ccmd = [sys.executable, __file__, "--client", url, "--endpoint", endpoint]
                ccmd += ["--concurrency", str(level), "--requests", str(args.requests), "--seconds", str(args.seconds)]
                ccmd += ["--gallery-size", str(n)]
                res = json.loads(subprocess.run(ccmd, capture_output=True, text=True, check=True).stdout)
                res["gallery"], res["startup_s"] = n, up
                print(
                    f"gallery {n:>9,} /{endpoint:8} clients={level:3d}: {res['requests_per_s']:7.1f} req/s, "
                    f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms ({res['requests']} requests, "
                    f"{res['errors']} errors)",
                    flush=True,
                )
                out.append(res)
        return out
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=400, help="requests per endpoint and level at most")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per endpoint and level at most")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="gallery sizes")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    p.add_argument("--client", default=None, help=argparse.SUPPRESS)
    p.add_argument("--endpoint", default="verify", help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--gallery-size", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        api = Path(os.environ["ADVFACE_LOAD_API_KEY_FILE"]).read_text().strip()
        res = _client(args.client, api, args.endpoint, args.concurrency, args.requests, args.seconds, args.gallery_size)
        print(json.dumps(res))
        return 0
    import ray
    import torch

    import advface_fast as af
    from advface_fast.match.config import SETTING_KEYS, DeploymentConfig

    shadow = Path(af.__file__).parent / "assets" / "shadow.safetensors"
    rows, builds = [], {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "key").write_text(secrets.token_hex(32))
        (tmp / "api").write_text(secrets.token_hex(24))
        for secret in ("key", "api"):
            (tmp / secret).chmod(0o600)
        os.environ["ADVFACE_LOAD_API_KEY_FILE"] = str(tmp / "api")
        s = af.Protector(af.load_model(shadow), key=tmp / "key", rotate=True, progress=False).settings(128)
        # threshold 0.3: any value does; the load does not depend on it
        DeploymentConfig(0.3, 1e-3, {k: s[k] for k in SETTING_KEYS}, None, None, None).save(tmp / "deployment.json")
        for n in args.sizes:
            gallery, builds[n] = _build_gallery(tmp, n, shadow)
            print(f"built a {n:,}-template protected gallery in {builds[n]:.0f} s", flush=True)
            rows += _serve(tmp, gallery, shadow, n, args)
            for f in tmp.glob(f"g{n}*"):
                f.unlink()
    res = {
        "command": "PYTHONPATH=benchmarks python " + " ".join(sys.argv),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": {"advface_fast": af.__version__, "torch": torch.__version__, "ray": ray.__version__},
        "gallery_build_seconds": {str(k): v for k, v in builds.items()},
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
