"""The 8x8 block DCT of DuetFace's frequency domain, with channels by frequency.

An image ``(N, C, H, W)`` (``H``, ``W`` multiples of 8) becomes ``(N, 64 C, H / 8, W / 8)``: for
colour channel ``c`` and the ``k``-th frequency of the 8x8 block in zigzag order (``k = 0`` the
DC term, then increasing spatial frequency, JPEG's order), channel ``64 c + k`` holds that
coefficient of every block. The transform is the orthonormal DCT-II, so :func:`block_idct`
inverts it exactly (up to float rounding) and the energy is preserved.
"""

from __future__ import annotations

import math
from functools import cache

import torch

BLOCK = 8


@cache
def _dct_matrix(n: int = BLOCK) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``D @ x`` transforms a column ``x`` of length ``n``)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


@cache
def zigzag_order(n: int = BLOCK) -> tuple[int, ...]:
    """Row-major indices ``u * n + v`` of the ``n x n`` block in zigzag (JPEG) order."""
    cells = [(u, v) for u in range(n) for v in range(n)]
    cells.sort(key=lambda t: (t[0] + t[1], t[1] if (t[0] + t[1]) % 2 == 0 else t[0]))
    return tuple(u * n + v for u, v in cells)


@cache
def _zigzag_basis() -> torch.Tensor:
    """``(64, 64)`` float64: row ``k`` is the 2-D DCT basis of the ``k``-th zigzag frequency
    over the block's pixels in row-major order (orthonormal: its inverse is its transpose)."""
    d = _dct_matrix()
    return torch.kron(d, d)[list(zigzag_order())]


def block_dct(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 64 C, H/8, W/8)`` block-DCT coefficients in zigzag channel order."""
    n, c, h, w = x.shape
    if h % BLOCK or w % BLOCK:
        raise ValueError(f"height and width must be multiples of {BLOCK}, got {h}x{w}")
    basis = _zigzag_basis().to(x)
    blocks = x.reshape(n, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).permute(0, 1, 2, 4, 3, 5)
    coef = blocks.reshape(n, c, h // BLOCK, w // BLOCK, BLOCK * BLOCK) @ basis.T
    return coef.permute(0, 1, 4, 2, 3).reshape(n, c * BLOCK * BLOCK, h // BLOCK, w // BLOCK)


def block_idct(coef: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`block_dct`: ``(N, 64 C, h, w)`` -> ``(N, C, 8 h, 8 w)``."""
    n, ch, h, w = coef.shape
    if ch % (BLOCK * BLOCK):
        raise ValueError(f"channels must be a multiple of {BLOCK * BLOCK}, got {ch}")
    c = ch // (BLOCK * BLOCK)
    basis = _zigzag_basis().to(coef)
    z = coef.reshape(n, c, BLOCK * BLOCK, h, w).permute(0, 1, 3, 4, 2) @ basis
    blocks = z.reshape(n, c, h, w, BLOCK, BLOCK).permute(0, 1, 2, 4, 3, 5)
    return blocks.reshape(n, c, h * BLOCK, w * BLOCK)


def low_channel_mask(colours: int, low_per_colour: int) -> torch.Tensor:
    """Bool ``(64 colours,)``: True for the first ``low_per_colour`` zigzag frequencies of each colour."""
    if not 0 < low_per_colour < BLOCK * BLOCK:
        raise ValueError(f"low_per_colour must be in 1..{BLOCK * BLOCK - 1}, got {low_per_colour}")
    return (torch.arange(BLOCK * BLOCK) < low_per_colour).repeat(colours)


def split_channels(coef: torch.Tensor, low_per_colour: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the client's low-frequency channels and the server's high-frequency ones
    (a partition of the channels, each in its original order)."""
    mask = low_channel_mask(coef.shape[1] // (BLOCK * BLOCK), low_per_colour).to(coef.device)
    return coef[:, mask], coef[:, ~mask]


def merge_channels(low: torch.Tensor, high: torch.Tensor, low_per_colour: int) -> torch.Tensor:
    """The inverse of :func:`split_channels`."""
    ch = low.shape[1] + high.shape[1]
    mask = low_channel_mask(ch // (BLOCK * BLOCK), low_per_colour).to(low.device)
    out = low.new_zeros(low.shape[0], ch, *low.shape[2:])
    out[:, mask] = low
    out[:, ~mask] = high
    return out
