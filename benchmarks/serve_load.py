"""Load test of the enrolment service on loopback: templates/s and p50/p99 latency at 1, 8 and 64
concurrent clients, dynamic batching against one protect call per request, side by side in one run.

The server is ``advface-fast serve`` (the shipped 128-d shadow decoder, default settings, one
replica) started as its own process twice: with batching (``--max-batch 64 --batch-wait-ms 5``)
and without (``--max-batch 1 --batch-wait-ms 0``: every request is one ``Protector`` call, what a
user writing a handler around ``protect`` gets, with the models held). The clients run in
another process (``--client``): each thread holds one keep-alive connection and sends one
template per request (bulk ``.npz`` body, an id per request), bounded by ``--requests`` per level
and ``--seconds``. The client process shares the machine's cores with the server: on a 2-core
machine its threads cost the server CPU, so read the numbers as ratios of one run.

    python benchmarks/serve_load.py --json benchmarks/results/serve_load_cpu.json
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
from pathlib import Path

import numpy as np
from load_clients import probe_templates, run_clients, wait_healthy
from machine import cpu_model

LEVELS = (1, 8, 64)
PORT = 8765


def _client(url: str, api_key: str, concurrency: int, requests: int, seconds: float) -> dict:
    from advface_fast.deploy.client import ServiceClient

    z = probe_templates(concurrency)
    res = run_clients(
        lambda: ServiceClient(url, api_key),
        lambda c, i: c.protect(z[i % 256], np.array([i])),
        concurrency,
        requests,
        seconds,
    )
    res["templates_per_s"] = res.pop("per_s")
    return res


def _run_server(tmp: Path, max_batch: int, wait_ms: float, args: argparse.Namespace) -> list[dict]:
    import advface_fast

    shadow = Path(advface_fast.__file__).parent / "assets" / "shadow.safetensors"
    cmd = [sys.executable, "-m", "advface_fast", "serve", "--decoder", str(shadow), "--key-file", str(tmp / "key")]
    cmd += ["--api-key-file", str(tmp / "api"), "--port", str(PORT), "--max-batch", str(max_batch)]
    cmd += ["--batch-wait-ms", str(wait_ms), "--cpus-per-replica", "1"]
    server = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{PORT}"
    from advface_fast.deploy.client import EnrolmentClient

    try:
        wait_healthy(url, server, timeout=180)
        stats = EnrolmentClient(url, (tmp / "api").read_text().strip())
        out = []
        for level in LEVELS:
            before = stats.stats()
            ccmd = [sys.executable, __file__, "--client", url, "--concurrency", str(level)]
            ccmd += ["--requests", str(args.requests), "--seconds", str(args.seconds)]
            res = json.loads(subprocess.run(ccmd, capture_output=True, text=True, check=True).stdout)
            res["max_batch"], res["batch_wait_ms"] = max_batch, wait_ms
            after = stats.stats()
            res["server_batches"] = after["batches"] - before["batches"]
            res["server_requests"] = after["requests"] - before["requests"]
            res["requests_per_batch"] = res["server_requests"] / max(res["server_batches"], 1)
            res["server_compute_s"] = after["compute_s"] - before["compute_s"]
            print(
                f"max_batch={max_batch:3d} clients={level:3d}: {res['templates_per_s']:7.1f} templates/s, "
                f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms ({res['requests']} requests, "
                f"{res['errors']} errors; {res['requests_per_batch']:.1f} requests per protect call)",
                flush=True,
            )
            out.append(res)
        return out
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=600, help="requests per concurrency level at most")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds per concurrency level at most")
    p.add_argument("--json", default=None, help="write the raw numbers here")
    p.add_argument("--client", default=None, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        api = Path(os.environ["ADVFACE_LOAD_API_KEY_FILE"]).read_text().strip()
        print(json.dumps(_client(args.client, api, args.concurrency, args.requests, args.seconds)))
        return 0
    import ray
    import torch

    import advface_fast

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "key").write_text(secrets.token_hex(32))
        (tmp / "api").write_text(secrets.token_hex(24))
        for secret in ("key", "api"):  # key files as ssh keeps them: others may not read them
            (tmp / secret).chmod(0o600)
        os.environ["ADVFACE_LOAD_API_KEY_FILE"] = str(tmp / "api")
        batched = _run_server(tmp, 64, 5.0, args)
        single = _run_server(tmp, 1, 0.0, args)
    rows = []
    for b, s in zip(batched, single, strict=True):
        rows.append({"concurrency": b["concurrency"], "speedup": b["templates_per_s"] / s["templates_per_s"]})
    res = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "versions": {"advface_fast": advface_fast.__version__, "torch": torch.__version__, "ray": ray.__version__},
        "batched": batched,
        "one_call_per_request": single,
        "ratio_batched_over_single": rows,
    }
    for r in rows:
        print(f"clients={r['concurrency']:3d}: batched / one call per request = {r['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
