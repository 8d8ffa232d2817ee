"""The CUDA-graph runner of the Python-driven loops (the Triton engine and the CUDA engine's NVRTC
loop; the compiled C++ loop has its own in ``csrc/pgd_loop.cu``).

At small batches a PGD step is a dozen launches of a few microseconds of work each, so Python's
launch overhead would dominate; the ``steps`` of a batch are captured once in a CUDA graph and
replayed. :class:`GraphRunner` runs a loop body under one rule for every engine:

1. the first call with a key (the loop's settings: steps, eps, alpha, kernel choice) runs eagerly
   (on CUDA on the stream captures will use, so lazy per-stream state such as cuBLAS's workspace
   and Triton's autotuning happen outside any capture);
2. the second call with the same key captures the body (which records without running) and
   replays it;
3. later calls with that key replay; a new key starts again at 1;
4. a failed capture warns once, keeps the reason in :attr:`GraphRunner.graph_error` and runs the
   body eagerly from then on: slower, the same numbers.

The body reads and writes only preallocated buffers (a graph replays fixed addresses); the caller
calls :meth:`GraphRunner.reset` when it replaces them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable

import torch


class GraphRunner:
    """Runs a loop body eagerly, then captured and replayed (rules above). ``enabled=False``:
    always eagerly (off CUDA, under Triton's interpreter). ``label`` names the loop in the
    warning."""

    def __init__(self, device: torch.device, enabled: bool, label: str) -> None:
        self.device = device
        self.enabled = enabled
        self.label = label
        self.graph_error: str | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_key: Hashable | None = None
        self._warm_key: Hashable | None = None
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        """Whether a graph of the body exists."""
        return self._graph is not None

    def reset(self) -> None:
        """Forget the graph and the warm key (the body's buffers were replaced); a failed capture
        is not forgotten."""
        self._graph = self._graph_key = self._warm_key = None

    def run(self, key: Hashable, body: Callable[[], None]) -> None:
        """Run ``body`` once, by whichever of the rules applies to ``key``."""
        if not self.enabled or self.graph_error is not None:
            body()
        elif self._graph is not None and self._graph_key == key:
            self._graph.replay()
        elif self._warm_key != key:
            self._warm_up(body)
            self._warm_key = key
        elif self._capture(key, body):
            self._graph.replay()
        else:
            body()

    def _side_stream(self) -> torch.cuda.Stream:
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        return self._side

    def _warm_up(self, body: Callable[[], None]) -> None:
        """Eagerly, on CUDA on the capture stream, ordered after and before the caller's stream
        (torch's documented warm-up pattern)."""
        if self.device.type != "cuda":
            body()
            return
        caller, side = torch.cuda.current_stream(self.device), self._side_stream()
        side.wait_stream(caller)
        with torch.cuda.stream(side):
            body()
        caller.wait_stream(side)

    def _capture(self, key: Hashable, body: Callable[[], None]) -> bool:
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._side_stream()):
                body()
        except RuntimeError as exc:
            self.graph_error = f"{type(exc).__name__}: {exc}"
            self._graph = self._graph_key = None
            warnings.warn(
                f"CUDA graph capture failed, the {self.label} runs eagerly: {exc}", RuntimeWarning, stacklevel=4
            )
            return False
        self._graph, self._graph_key = graph, key
        return True
