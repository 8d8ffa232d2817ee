"""Pictures: image grids written as PNG with Pillow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write ``rgb`` ``(H, W, 3)`` uint8 to ``path`` as PNG; returns the path."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape}")
    path = Path(path)
    Image.fromarray(rgb).save(path, format="PNG")
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
