"""1:N search over records kept under several keys: each probe rotated once per group, each group
scored with its own rotation of the probe.

:class:`ShardedGallery` packs the records once (one zero-padded block per group, the groups'
matrices stacked), so that a search is two batched products however many groups there are, with
no loop over the groups; :func:`sharded_search` is the one-call form.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import KeyMode


class ShardedGallery:
    """``records`` ``(N, D)`` (float32 or float64, unit rows) whose groups under ``mode`` are
    ``groups`` ``(N,)``, packed for search: ``blocks`` ``(G, M, D)`` (each group's rows, zero
    padded to the largest group's ``M``), ``rows`` ``(G, M)`` int64 (each slot's row of
    ``records``; -1 for padding) and ``rotations`` ``(G, D, D)``. Memory: ``G M D`` (about ``N D``
    plus the largest group's excess per group) and ``G D^2``."""

    def __init__(self, mode: KeyMode, records: torch.Tensor, groups: np.ndarray) -> None:
        g = np.asarray(groups, dtype=np.int64)
        if records.ndim != 2 or len(g) != len(records):
            raise ValueError(f"records (N, D) and groups (N,) must agree, got {tuple(records.shape)} and {g.shape}")
        if len(g) == 0:
            raise ValueError("no records to search")
        order = np.argsort(g, kind="stable")
        keys, starts, counts = np.unique(g[order], return_index=True, return_counts=True)
        n_groups, width, dim = len(keys), int(counts.max()), records.shape[1]
        self.n, self.dim = len(g), dim
        self.blocks = records.new_zeros(n_groups, width, dim)
        rows = np.full((n_groups, width), -1, dtype=np.int64)
        for i, (a, c) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
            rows[i, :c] = order[a : a + c]
            self.blocks[i, :c] = records[torch.from_numpy(order[a : a + c])]
        self.rows = torch.from_numpy(rows)
        self.padding = self.rows < 0  # (G, M)
        self.padded = bool(self.padding.any())
        self.rotations = torch.stack([mode.rotation(int(k), dim, records.dtype) for k in keys.tolist()])

    def search(self, probes: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` cosine matches of ``probes`` ``(B, D)``: ``(scores, rows)``, each ``(B, k)``,
        best first; rows index the packed ``records``. Costs ``G D^2 + G M D`` per probe."""
        if probes.ndim != 2 or probes.shape[1] != self.dim:
            raise ValueError(f"probes must be (B, {self.dim}), got {tuple(probes.shape)}")
        if not 1 <= k <= self.n:
            raise ValueError(f"k must be in 1..{self.n}, got {k}")
        rotated = torch.matmul(self.rotations, probes.to(self.blocks.dtype).T)  # (G, D, B): Q_g p
        scores = torch.bmm(self.blocks, rotated)  # (G, M, B)
        if self.padded:
            scores.masked_fill_(self.padding[:, :, None], float("-inf"))
        best_s, pos = scores.reshape(-1, len(probes)).topk(k, dim=0)
        return best_s.T.contiguous(), self.rows.reshape(-1)[pos.T]


def sharded_search(
    mode: KeyMode, records: torch.Tensor, groups: np.ndarray, probes: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` cosine matches of ``probes`` ``(B, D)`` among ``records`` ``(N, D)`` (float32,
    unit rows) whose groups are ``groups`` ``(N,)``: ``(scores, rows)``, each ``(B, k)``, best
    first; rows index ``records``. Costs ``G D^2`` per probe for ``G`` groups beside ``N D``
    (packs the records each call: search a :class:`ShardedGallery` to pack them once)."""
    return ShardedGallery(mode, records, groups).search(probes, k)
