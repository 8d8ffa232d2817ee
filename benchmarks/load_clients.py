"""What the service load tests share: concurrent keep-alive clients with latency percentiles, and
waiting for a started server to answer ``/healthz``."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def probe_templates(seed: int, n: int = 256, dim: int = 128) -> np.ndarray:
    """``n`` random unit templates ``(n, dim)`` float32, the requests' bodies."""
    z = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def run_clients(
    make_client: Callable[[], Any], call: Callable[[Any, int], None], concurrency: int, requests: int, seconds: float
) -> dict:
    """``concurrency`` threads, each with its own client (``make_client()``, closed at the end),
    make ``call(client, i)`` for ``i`` in ``0..requests-1`` until done or ``seconds`` pass. Returns
    the completed ``requests``, ``errors``, wall ``seconds``, ``per_s`` and p50/p99 latency (ms)."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        c = make_client()
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t = time.perf_counter()
            try:
                call(c, i)
            except Exception:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                lat.append(time.perf_counter() - t)
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1e3
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": errors[0],
        "seconds": wall,
        "per_s": len(lat) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Return once ``url``/healthz answers 200; raise if ``proc`` exits or ``timeout`` passes."""
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the service did not come up")
