"""The enrolment service: protect templates that arrive one at a time, batched dynamically.

A Ray Serve deployment (Ray is already the package's distributed engine, and Serve's
``@serve.batch`` gives dynamic batching): each replica loads the models once, and the requests
that reach it within ``batch_wait_s`` (up to ``max_batch_requests``) are protected by one
:class:`~advface_fast.Protector` call, in the replica's event loop: requests that arrive while
a batch computes queue up and form the next one. Replicas scale across a Ray cluster like the
batch pipeline (``num_replicas``).

HTTP API (wire format: :mod:`.http_codec`):

- ``POST /protect`` (``Authorization: Bearer <api key>``): one or many float32 templates, JSON or
  ``.npy``, with optional ids -> the protected templates and their ids. A row's result equals
  ``protect(rows, decoder, encoder, key=key, row_ids=ids)`` with the service's settings (up to
  GEMM rounding of the batch, as for any two batchings). Without ids the service draws random
  63-bit ids and returns them: every template gets its own keyed random start (a library call
  without ``row_ids`` would give every single-template call the noise of row 0); keep the ids
  to reproduce a result.
- ``GET /healthz``: 200 ``{"status": "ok", "dim": D}`` once the replica has loaded its models.
- ``GET /stats`` (API key): requests, rows and batches the replica that answers served, the
  largest batch (requests per protect call) and the replica's id (host:pid).

Refusals: 401 (missing or wrong key; compared in constant time on SHA-256 digests), 400 (bad
JSON, wrong dtype, wrong dimension, NaN, bad ids), 413 (more than ``max_body_bytes`` or
``max_rows`` templates), 415 (another content type), 404/405. A refused request is never
batched and changes no counter but the refusals'.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..optional import import_optional
from .http_codec import IDS_HEADER, RequestError, encode_response, parse_request


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the service. ``protect_kwargs`` go to :class:`~advface_fast.Protector` (eps,
    alpha, steps, start, renorm, rotate, precision, backend, seed; never ``key``)."""

    max_batch_requests: int = 64
    batch_wait_s: float = 0.005
    max_rows: int = 4096
    max_body_bytes: int = 8 << 20
    num_replicas: int = 1
    max_queued_requests: int = 256  # per replica; beyond it Serve's proxy holds and retries requests
    cpus_per_replica: float = 1.0
    torch_threads: int | None = None  # default: cpus_per_replica
    protect_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("max_batch_requests", "max_rows", "max_body_bytes", "num_replicas", "max_queued_requests"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.batch_wait_s >= 0:
            raise ValueError(f"batch_wait_s must be >= 0, got {self.batch_wait_s!r}")
        if "key" in self.protect_kwargs or "progress" in self.protect_kwargs:
            raise ValueError("protect_kwargs must not hold key or progress (the service sets them)")


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


class Enroller:
    """One replica (wrapped by :func:`build_app` into a Serve deployment)."""

    def __init__(self, decoder: Any, encoder: Any, key: bytes, api_key_digest: bytes, config: ServiceConfig) -> None:
        import torch

        from ..encoders.loader import as_encoder
        from ..models.serialization import load_model
        from ..protector import Protector

        torch.set_num_threads(max(1, int(config.torch_threads or config.cpus_per_replica)))
        dec = load_model(decoder) if isinstance(decoder, str) else decoder
        self.protector = Protector(dec, as_encoder(encoder), key=key, progress=False, **config.protect_kwargs)
        dim = getattr(dec, "in_dim", None)
        if not isinstance(dim, int):
            raise ValueError("the service needs a decoder that states its input dimension (in_dim)")
        self.dim = dim
        self.config = config
        self._api_key = api_key_digest
        self.stats = {"requests": 0, "rows": 0, "batches": 0, "max_batch_requests": 0, "refused": 0, "compute_s": 0.0}
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        # a first call compiles nothing but resolves the backend and probes shapes: do it now
        self.protector(np.zeros((1, dim), dtype=np.float32) + 1.0 / dim**0.5, row_ids=np.zeros(1, dtype=np.int64))

    def _authorised(self, header: str | None) -> bool:
        token = header[7:] if header and header[:7].lower() == "bearer " else ""
        return hmac.compare_digest(_digest(token), self._api_key) and bool(token)

    def _compute(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.protector(rows, row_ids=ids)

    async def _protect_batch(self, item: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """One request, unbatched; the Serve replica replaces this by its ``@serve.batch`` version."""
        return (await self._protect_batch_impl([item]))[0]

    async def _protect_batch_impl(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | Exception]:
        """The protected rows of each request, or the error of a request that cannot be protected:
        a batch that fails is computed again request by request, so one request never fails another."""
        rows = np.concatenate([r for r, _ in items])
        ids = np.concatenate([i for _, i in items])
        t0 = time.perf_counter()
        # computed in the event loop, not a worker thread: the requests that arrive meanwhile wait
        # in Ray's queue and form the next batch, where a thread would contend with the loop for
        # the GIL, admit them one by one and keep batches small (benchmarks/serve_load.py)
        try:
            safe = self._compute(rows, ids)
        except Exception:
            if len(items) == 1:
                raise
            out_each: list[np.ndarray | Exception] = []
            for r, i in items:
                try:
                    out_each.append(self._compute(r, i))
                except Exception as exc:  # this request's own failure, answered to it alone
                    out_each.append(exc)
            self.stats["compute_s"] += time.perf_counter() - t0
            self.stats["batches"] += 1
            return out_each
        self.stats["compute_s"] += time.perf_counter() - t0
        self.stats["batches"] += 1
        self.stats["max_batch_requests"] = max(self.stats["max_batch_requests"], len(items))
        out, a = [], 0
        for r, _ in items:
            out.append(safe[a : a + len(r)])
            a += len(r)
        return out

    async def handle(self, method: str, path: str, headers: Any, read_body: Any) -> tuple[int, bytes, str, dict]:
        """Route one request; returns (status, body, content type, headers). ``read_body(limit)``
        returns the body or None when it exceeds ``limit`` bytes."""
        path = path.rstrip("/") or "/"
        if path == "/healthz":
            if method != "GET":
                return _error(405, "use GET /healthz")
            return _json(200, {"status": "ok", "dim": self.dim})
        if path not in ("/protect", "/stats"):
            return _error(404, f"no endpoint {path}; endpoints: POST /protect, GET /healthz, GET /stats")
        if not self._authorised(headers.get("authorization")):
            self.stats["refused"] += 1
            return _error(401, "missing or wrong API key (Authorization: Bearer <key>)")
        if path == "/stats":
            if method != "GET":
                return _error(405, "use GET /stats")
            return _json(200, {**self.stats, "replica": self.replica, "config": asdict(self.config)})
        if method != "POST":
            return _error(405, "use POST /protect")
        try:
            body = await read_body(self.config.max_body_bytes)
            if body is None:
                raise RequestError(413, f"the body is larger than {self.config.max_body_bytes} bytes")
            req = parse_request(
                body, headers.get("content-type"), headers.get(IDS_HEADER), self.dim, self.config.max_rows
            )
        except RequestError as exc:
            self.stats["refused"] += 1
            return _error(exc.status, exc.message)
        try:
            safe = await self._protect_batch((req.rows, req.ids))
        except ValueError as exc:  # NonFiniteError and the checks of protect: this request's data
            safe = exc
        if isinstance(safe, Exception):
            self.stats["refused"] += 1
            if isinstance(safe, ValueError):
                return _error(400, f"these templates cannot be protected: {safe}")
            return _error(500, f"protection failed: {type(safe).__name__}")
        self.stats["requests"] += 1
        self.stats["rows"] += len(req.rows)
        body, ctype, extra = encode_response(safe, req.ids, req.npy)
        return 200, body, ctype, extra


def _json(status: int, doc: dict) -> tuple[int, bytes, str, dict]:
    return status, json.dumps(doc).encode(), "application/json", {}


def _error(status: int, message: str) -> tuple[int, bytes, str, dict]:
    return _json(status, {"error": message})


def build_app(decoder: Any, encoder: Any, key: bytes, api_key: str, config: ServiceConfig) -> Any:
    """The Serve application (``serve.run(app)``). ``decoder``: an ``nn.Module`` or a model path
    readable by every replica; ``encoder``: what :func:`~advface_fast.encoders.loader.as_encoder` takes
    (``"sface"``, a path) or None; ``key``: the defender's key bytes; ``api_key``: the token
    clients send (only its SHA-256 digest reaches the replicas)."""
    serve = import_optional("ray.serve", "the enrolment service (pip install 'advface_fast[serve]')")
    if not api_key:
        raise ValueError("the service needs an API key (--api-key-file); refusing to serve without one")

    class _Replica(Enroller):
        @serve.batch(max_batch_size=config.max_batch_requests, batch_wait_timeout_s=config.batch_wait_s)
        async def _protect_batch(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:  # type: ignore[override]
            return await self._protect_batch_impl(items)

        async def __call__(self, request: Any) -> Any:
            from starlette.responses import Response

            async def read_body(limit: int) -> bytes | None:
                declared = request.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    return None
                chunks, size = [], 0
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)

            status, body, ctype, extra = await self.handle(request.method, request.url.path, request.headers, read_body)
            return Response(body, status_code=status, media_type=ctype, headers=extra)

    _Replica.__name__ = _Replica.__qualname__ = "AdvFaceEnroller"
    deployment = serve.deployment(
        _Replica,
        name="AdvFaceEnroller",
        num_replicas=config.num_replicas,
        ray_actor_options={"num_cpus": config.cpus_per_replica},
        max_ongoing_requests=max(config.max_queued_requests, config.max_batch_requests),
    )
    return deployment.bind(decoder, encoder, key, _digest(api_key), config)


def start_service(
    decoder: Any,
    encoder: Any,
    key: bytes,
    api_key: str,
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
) -> str:
    """Start Ray (``address``, else ``$RAY_ADDRESS``, else a local instance), Serve's HTTP proxy on
    ``host:port`` and the application; returns its URL once every replica is up (models loaded).
    Stop with ``ray.serve.shutdown()``."""
    import os

    ray = import_optional("ray", "the enrolment service")
    serve = import_optional("ray.serve", "the enrolment service (pip install 'advface_fast[serve]')")
    app = build_app(decoder, encoder, key, api_key, config)
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False)
    # per-request access logs cost the proxy and the replica CPU on every template: warnings only
    quiet = {"enable_access_log": False, "log_level": "WARNING"}
    serve.start(http_options={"host": host, "port": int(port)}, logging_config=quiet)
    serve.run(app, name="advface", route_prefix="/", logging_config=quiet)
    return f"http://{host}:{int(port)}"
