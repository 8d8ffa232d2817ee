"""A small face recognition CNN (the encoder of the synthetic-face world's default model pair)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .serialization import register_model


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.PReLU(c_out),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.PReLU(c_out),
    )


@register_model
class FaceEncoder(nn.Module):
    """Images ``(B, 3, S, S)`` in [-1, 1] -> embeddings ``(B, dim)`` (not normalised; wrap in
    :class:`~advface_fast.encoders.base.TorchEncoder`, which normalises).

    Four stages of two 3x3 convolutions (BatchNorm, PReLU), the first three halving the
    resolution, then a linear embedding with BatchNorm (the ArcFace/MobileFaceNet head layout).
    """

    def __init__(self, image_size: int = 32, dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.image_size, self.dim, self.width = int(image_size), int(dim), int(width)
        w = self.width
        self.features = nn.Sequential(
            _block(3, w, 1), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 2)
        )
        side = -(-self.image_size // 8)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * w * side * side, self.dim), nn.BatchNorm1d(self.dim)
        )

    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "dim": self.dim, "width": self.width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
