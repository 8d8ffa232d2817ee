"""Counter-based random numbers keyed by (seed, row id, column).

The random start of the protection loop must give a row the same noise whichever batch, shard,
machine or device processes it, so the noise is a pure function of ``(seed, row, column)`` rather
than the state of a sequential generator. SplitMix64 (Steele et al., 2014) is the mixing function:
cheap, and it passes BigCrush when used as a hash of a counter.

:func:`row_uniform` computes it with torch int64 arithmetic on the rows' device (GPU galleries
never round-trip to the host for their noise); :func:`row_uniform_ref` is the same function in
numpy's wrapping uint64 arithmetic, the reference the tests compare it with bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

from . import extension as _ext

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def _signed(u: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    u &= _MASK64
    return u - (1 << 64) if u >= 1 << 63 else u


def _srl(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix64_t(x: torch.Tensor) -> torch.Tensor:
    # int64 addition and multiplication wrap modulo 2**64 on CPU and CUDA, like uint64
    x = x + _signed(_GOLDEN)
    x = (x ^ _srl(x, 30)) * _signed(_M1)
    x = (x ^ _srl(x, 27)) * _signed(_M2)
    return x ^ _srl(x, 31)


def row_uniform(
    seed: int,
    rows: torch.Tensor,
    dim: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Uniform noise in ``[-1, 1)`` of shape ``(len(rows), dim)`` on ``device`` (default: the
    rows' device): the float64 values rounded to ``dtype``. ``rows`` holds the global row ids
    (int64, non-negative); element ``(i, j)`` depends only on ``seed``, ``rows[i]`` and ``j``.
    On the CPU the compiled kernel of ``advface_fast._C`` (``csrc/seeding_cpu.cpp``; 1024 x 512
    in ~1 ms against 8.6 ms for numpy's uint64 arithmetic and 14.7 ms for torch's, 2 cores), else
    numpy; on GPUs the torch version; all give the same bits."""
    r = torch.as_tensor(rows, dtype=torch.int64, device=device)
    if r.device.type == "cpu":
        ext = _ext.load()
        if ext is not None and dtype in (torch.float32, torch.float64):
            r = r.contiguous()
            out = torch.empty(len(r), dim, dtype=dtype)
            code = 0 if dtype == torch.float32 else 2
            ext.row_uniform_cpu(seed & _MASK64, r.data_ptr(), len(r), dim, out.data_ptr(), code)
            return out
        return torch.from_numpy(row_uniform_ref(seed, r.numpy(), dim)).to(dtype)
    return _row_uniform_torch(seed, r, dim).to(dtype)


def _row_uniform_torch(seed: int, r: torch.Tensor, dim: int) -> torch.Tensor:
    """:func:`row_uniform` in torch int64 arithmetic on ``r``'s device."""
    key = _splitmix64_t(r) ^ _signed(seed)
    key = _splitmix64_t(key)
    cols = torch.arange(dim, dtype=torch.int64, device=r.device) * _signed(_GOLDEN)
    bits = _splitmix64_t(_splitmix64_t(key[:, None] + cols[None, :]))
    # 53 high bits -> a double in [0, 1), then to [-1, 1)
    return _srl(bits, 11).to(torch.float64) * (2.0 / (1 << 53)) - 1.0


def _splitmix64_np(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def row_uniform_ref(seed: int, rows: np.ndarray, dim: int) -> np.ndarray:
    """:func:`row_uniform` in numpy uint64 arithmetic (the reference)."""
    r = np.asarray(rows, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64_np(_splitmix64_np(r) ^ np.uint64(seed & _MASK64))
        counters = key[:, None] + np.arange(dim, dtype=np.uint64)[None, :] * np.uint64(_GOLDEN)
        bits = _splitmix64_np(_splitmix64_np(counters))
    return (bits >> np.uint64(11)).astype(np.float64) * (2.0 / (1 << 53)) - 1.0
