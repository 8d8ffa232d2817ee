"""Minimal PNG writer (RGB, 8-bit) so pictures need no imaging dependency."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` ``(H, W, 3)`` uint8 to ``path``; returns the path."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape}")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path = Path(path)
    path.write_bytes(png)
    return path


def image_grid(rows: list[np.ndarray], scale: int = 4, pad: int = 2) -> np.ndarray:
    """Tile rows of images ``(n, 3, H, W)`` in [-1, 1] into one ``(H', W', 3)`` uint8 picture."""
    n, _, h, w = rows[0].shape
    cell_h, cell_w = h * scale + pad, w * scale + pad
    out = np.full((len(rows) * cell_h + pad, n * cell_w + pad, 3), 255, dtype=np.uint8)
    for r, imgs in enumerate(rows):
        for c in range(n):
            img = ((np.clip(imgs[c], -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)
            img = img.repeat(scale, axis=0).repeat(scale, axis=1)
            y, x = pad + r * cell_h, pad + c * cell_w
            out[y : y + h * scale, x : x + w * scale] = img
    return out
