"""FLOP counts of the protection loop, for throughput and fraction-of-peak reports."""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def mlp_pgd_flops_per_row_step(widths: Sequence[int]) -> int:
    """FLOPs of one PGD step for one row through an MLP with layer widths ``[D, h_1, ..., P]``:
    each layer's forward GEMM and its input-gradient GEMM, ``2 * in * out`` each (elementwise work
    and the decode of the shadow image are not counted)."""
    return 4 * sum(a * b for a, b in itertools.pairwise(widths))
