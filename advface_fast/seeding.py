"""Counter-based random numbers keyed by (seed, row id, column).

The random start of the protection loop must give a row the same noise whichever batch, shard or
machine processes it, so the noise is a pure function of ``(seed, row, column)`` rather than the
state of a sequential generator. SplitMix64 (Steele et al., 2014) is the mixing function: cheap,
vectorises in numpy's wrapping uint64 arithmetic, and passes BigCrush when used as a hash of a
counter.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def row_uniform(seed: int, rows: np.ndarray | torch.Tensor, dim: int) -> torch.Tensor:
    """Uniform noise in ``[-1, 1)`` of shape ``(len(rows), dim)``, float64, on the CPU.

    ``rows`` holds the global row ids (int64, any non-negative values). Element ``(i, j)`` depends
    only on ``seed``, ``rows[i]`` and ``j``.
    """
    r = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ _splitmix64(r))
        counters = key[:, None] + np.arange(dim, dtype=np.uint64)[None, :] * _GOLDEN
        bits = _splitmix64(_splitmix64(counters))
    # 53 high bits -> a double in [0, 1), then to [-1, 1).
    u = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return torch.from_numpy(2.0 * u - 1.0)
