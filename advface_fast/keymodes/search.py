"""1:N search over records kept under several keys: each probe rotated once per group, each group
scored with its own rotation of the probe."""

from __future__ import annotations

import numpy as np
import torch

from .base import KeyMode


def sharded_search(
    mode: KeyMode, records: torch.Tensor, groups: np.ndarray, probes: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine matches of ``probes`` ``(B, D)`` among ``records`` ``(N, D)`` (float32,
    unit rows) whose groups are ``groups`` ``(N,)``: ``(scores, rows)``, each ``(B, k)``, best
    first; rows index ``records``. Costs ``G D^2`` per probe for ``G`` groups beside ``N D``.
    Records stored sorted by group are scored in place (slices); otherwise each group is gathered."""
    g = np.asarray(groups, dtype=np.int64)
    if records.ndim != 2 or probes.ndim != 2 or records.shape[1] != probes.shape[1] or len(g) != len(records):
        raise ValueError(
            f"records (N, D), groups (N,) and probes (B, D) must agree, got {tuple(records.shape)}, "
            f"{g.shape} and {tuple(probes.shape)}"
        )
    if not 1 <= k <= len(records):
        raise ValueError(f"k must be in 1..{len(records)}, got {k}")
    in_place = bool((np.diff(g) >= 0).all())
    order = np.arange(len(g)) if in_place else np.argsort(g, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(g[order])) + 1, [len(g)]])
    scores = torch.empty(len(records), len(probes), dtype=records.dtype)  # (N, B), in sorted order
    for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        q = probes.to(records.dtype) @ mode.rotation(int(g[order[a]]), probes.shape[1], records.dtype).T
        block = records[a:b] if in_place else records[torch.from_numpy(order[a:b])]
        torch.matmul(block, q.T, out=scores[a:b])
    best_s, pos = scores.topk(k, dim=0)
    return best_s.T.contiguous(), torch.from_numpy(order)[pos.T]
