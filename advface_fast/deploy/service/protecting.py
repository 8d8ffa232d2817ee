"""The protecting side of a replica: templates protected in dynamic batches.

The requests that reach a replica within ``batch_wait_s`` (up to ``max_batch_requests``) are
protected by one :class:`~advface_fast.Protector` call, in the replica's event loop: requests that
arrive while a batch computes queue up and form the next one (a worker thread would contend with
the loop for the GIL, admit them one by one and keep batches small; ``benchmarks/serve_load.py``).
A batch that fails is computed again request by request, so one request never fails another.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np

from .config import ServiceConfig


class Protecting:
    """Loads the models once and protects batches (``_protect_batch`` is replaced by Serve's
    ``@serve.batch`` version in :mod:`.ray_app`)."""

    def __init__(self, decoder: Any, encoder: Any, key: bytes, config: ServiceConfig) -> None:
        import torch

        from ...encoders.loader import as_encoder
        from ...models.serialization import load_model
        from ...protector import Protector

        torch.set_num_threads(max(1, int(config.torch_threads or config.cpus_per_replica)))
        dec = load_model(decoder) if isinstance(decoder, str) else decoder
        self.protector = Protector(dec, as_encoder(encoder), key=key, progress=False, **config.protect_kwargs)
        dim = getattr(dec, "in_dim", None)
        if not isinstance(dim, int):
            raise ValueError("the service needs a decoder that states its input dimension (in_dim)")
        self.dim, self.config = dim, config
        self.settings = self.protector.settings(dim)
        self.stats = {"requests": 0, "rows": 0, "batches": 0, "max_batch_requests": 0, "refused": 0, "compute_s": 0.0}
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        # a first call resolves the backend and probes shapes: do it before the first request
        self.protector(np.zeros((1, dim), dtype=np.float32) + 1.0 / dim**0.5, row_ids=np.zeros(1, dtype=np.int64))

    def _compute(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.protector(rows, row_ids=ids)

    async def _protect_batch(self, item: tuple[np.ndarray, np.ndarray]) -> np.ndarray | Exception:
        """One request, unbatched."""
        return (await self._protect_batch_impl([item]))[0]

    async def protect(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Protected ``rows (N, D)`` float32 under ``ids (N,)``; raises this request's own error."""
        out = await self._protect_batch((rows, ids))  # raises for a batch of one that failed
        if isinstance(out, Exception):  # this request's own failure inside a larger batch
            raise out
        self.stats["requests"] += 1
        self.stats["rows"] += len(rows)
        return out

    async def _protect_batch_impl(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray | Exception]:
        """The protected rows of each request, or the error of a request that cannot be protected."""
        rows = np.concatenate([r for r, _ in items])
        ids = np.concatenate([i for _, i in items])
        t0 = time.perf_counter()
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
            self._count(t0, len(items))
            return out_each
        self._count(t0, len(items))
        out, a = [], 0
        for r, _ in items:
            out.append(safe[a : a + len(r)])
            a += len(r)
        return out

    def _count(self, t0: float, requests: int) -> None:
        self.stats["compute_s"] += time.perf_counter() - t0
        self.stats["batches"] += 1
        self.stats["max_batch_requests"] = max(self.stats["max_batch_requests"], requests)
