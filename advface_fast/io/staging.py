"""Host-side staging of row batches for a compute device, one batch ahead each way.

Used by :class:`~advface_fast.Protector` when the rows live in host memory (numpy, CPU tensors,
``.npy`` files). Batch ``k + 1`` is read from its source into a host buffer while batch ``k``
computes, and batch ``k``'s result is copied back without blocking and handed to the sink only
after batch ``k + 1`` has been queued. On a GPU the buffers are pinned (page-locked), so both
copies are asynchronous and disk reads, copies and sink writes of neighbouring batches overlap
the GPU's compute; on the CPU the same schedule runs synchronously.

Why two buffers each way and one stream suffice: all GPU work (copy in, compute, copy out) is
queued on the current stream in batch order. Input buffer ``k % 2`` is refilled for batch
``k + 2`` only after the host has waited for batch ``k + 1``'s copy-out event, which the stream
orders after batch ``k``'s copy-in; output buffer ``k % 2`` is reused for batch ``k + 2`` only
after batch ``k`` was written to the sink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .arrays import RowSource


@dataclass
class _Pending:
    start: int
    rows: torch.Tensor  # host view of the result
    event: torch.cuda.Event | None


class HostStaging:
    """Iterates ``(start, stop, batch tensors on device)`` over ``sources`` (host RowSources of
    equal length) from row ``first``; :meth:`emit` queues a batch's result, :meth:`flush` hands
    the last one to the sink. ``write(start, rows)`` is the sink's write."""

    def __init__(
        self,
        sources: list[RowSource],
        device: torch.device,
        dtypes: list[torch.dtype],
        batch: int,
        write: Callable[[int, torch.Tensor], None],
    ) -> None:
        self.sources, self.device, self.dtypes, self.batch, self._write = sources, device, dtypes, batch, write
        self.pinned = device.type == "cuda"
        self._in: list[list[torch.Tensor]] = []
        self._out: list[torch.Tensor] = []
        self._pending: _Pending | None = None
        self._k = 0

    def _buffer(self, store: list, idx: int, like: torch.Tensor) -> torch.Tensor:
        """Host buffer ``idx`` of ``store`` with room for ``like`` (grown on first use)."""
        while len(store) <= idx:
            store.append(None)
        buf = store[idx]
        if buf is None or buf.dtype != like.dtype or buf.shape[1:] != like.shape[1:] or len(buf) < len(like):
            buf = torch.empty((max(self.batch, len(like)), *like.shape[1:]), dtype=like.dtype, pin_memory=self.pinned)
            store[idx] = buf
        return buf[: len(like)]

    def _stage(self, a: int, b: int, slot: int) -> list[torch.Tensor]:
        while len(self._in) <= slot:
            self._in.append([])
        staged = []
        for i, src in enumerate(self.sources):
            rows = src.read(a, b)
            if self.pinned:
                host = self._buffer(self._in[slot], i, rows)
                host.copy_(rows)
                rows = host
            staged.append(rows)
        return staged

    def batches(self, first: int) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
        n = len(self.sources[0])
        starts = list(range(first, n, self.batch))
        if not starts:
            return
        nxt = self._stage(starts[0], min(starts[0] + self.batch, n), 0)
        for k, a in enumerate(starts):
            b = min(a + self.batch, n)
            host = nxt
            on_device = [
                h.to(device=self.device, dtype=dt, non_blocking=self.pinned).contiguous()
                for h, dt in zip(host, self.dtypes, strict=True)
            ]
            self._k = k
            yield a, b, on_device
            if k + 1 < len(starts):  # read the next batch while the device works on this one
                a2 = starts[k + 1]
                nxt = self._stage(a2, min(a2 + self.batch, n), (k + 1) % 2)

    def emit(self, start: int, result: torch.Tensor) -> None:
        """Queue ``result`` (on the device) of the batch at ``start``; write the previous batch's."""
        if self.pinned:
            host = self._buffer(self._out, self._k % 2, result)
            host.copy_(result, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            pending = _Pending(start, host, event)
        else:
            pending = _Pending(start, result, None)
        self.flush()
        self._pending = pending

    def flush(self) -> None:
        """Hand the queued batch (if any) to the sink."""
        if self._pending is not None:
            if self._pending.event is not None:
                self._pending.event.synchronize()
            self._write(self._pending.start, self._pending.rows)
            self._pending = None
