"""The DuetFace recognition model: a client model on the low-frequency channels whose feature
maps mask the server model's on the high-frequency channels.

Following Mi et al. (ACM MM 2022): the image is upsampled and block-DCT transformed
(:mod:`.dct`); the client keeps the ``low_per_colour`` lowest zigzag frequencies of each colour
(the visually informative part) and sends the rest to the server. The client model is trained
first with its own margin head, then frozen; at each stage of the server model an interactive
block turns the client's feature map of that stage into a spatial mask (a 1x1 convolution to one
map, resized to the server's, min-max normalised per face to [0, 1]) and applies it to the
server's map ``s = sigmoid(x)`` as ``s + w * s * mask`` with a learned gate ``w`` (0 at start).
The server's embedding is the template the system stores.

Choices the paper leaves open, or that the synthetic world forces, stated here:

- upsampling x4 (32 -> 128 pixels, 16x16 maps per frequency; the paper upsamples 112-pixel faces
  x8 to keep 112x112 maps): x8 would cost 4x the compute of the shipped encoder on 2 CPU cores;
- 10 of 64 frequencies per colour to the client (30 of 192 channels, the published code's
  default), 162 to the server;
- both models are the shipped encoder's layout (three stages of two 3x3 convolutions with
  BatchNorm and PReLU, then a linear 128-d embedding with BatchNorm); the paper's IR-18 server
  and MobileFaceNet client are too large for this world;
- no facial-landmark ROI crop of the masks (the paper multiplies them by a landmark-model hull;
  there is no landmark model here), and the mask's 1x1 convolution is learned (the published
  code builds a fresh, untrained one on every forward pass).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.face_encoder import _block
from ..models.serialization import register_model
from .dct import BLOCK, block_dct, split_channels


class _Stages(nn.Module):
    """Three stages (stride 1, 2, 2) and a linear embedding; returns the embedding and the maps."""

    def __init__(self, c_in: int, width: int, side: int, dim: int) -> None:
        super().__init__()
        w = width
        self.stages = nn.ModuleList([_block(c_in, w, 1), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2)])
        out_side = -(-side // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * w * out_side * out_side, dim), nn.BatchNorm1d(dim)
        )
        self.channels = [w, 2 * w, 4 * w]


class InteractiveBlock(nn.Module):
    """``s + w * s * mask(client map)`` with ``s = sigmoid(server map)``."""

    def __init__(self, client_channels: int) -> None:
        super().__init__()
        self.to_mask = nn.Conv2d(client_channels, 1, 1)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, server: torch.Tensor, client: torch.Tensor) -> torch.Tensor:
        m = self.to_mask(F.interpolate(client, size=server.shape[2:], mode="bilinear", align_corners=False))
        lo = m.amin(dim=(1, 2, 3), keepdim=True)
        hi = m.amax(dim=(1, 2, 3), keepdim=True)
        mask = (m - lo) / (hi - lo).clamp_min(1e-6)
        s = torch.sigmoid(server)
        return s + self.gate * s * mask


@register_model
class DuetFace(nn.Module):
    """Images ``(B, 3, S, S)`` in [-1, 1] -> the server's embedding ``(B, dim)`` (not normalised)."""

    def __init__(
        self,
        image_size: int = 32,
        upsample: int = 4,
        low_per_colour: int = 10,
        dim: int = 128,
        width: int = 24,
        client_width: int = 16,
    ) -> None:
        super().__init__()
        self.image_size, self.upsample, self.low_per_colour = int(image_size), int(upsample), int(low_per_colour)
        self.dim, self.width, self.client_width = int(dim), int(width), int(client_width)
        side = self.image_size * self.upsample // BLOCK
        if side * BLOCK != self.image_size * self.upsample:
            raise ValueError("image_size * upsample must be a multiple of 8")
        n_low = 3 * self.low_per_colour
        self.client = _Stages(n_low, self.client_width, side, self.dim)
        self.server = _Stages(3 * BLOCK * BLOCK - n_low, self.width, side, self.dim)
        self.interact = nn.ModuleList(InteractiveBlock(c) for c in self.client.channels)

    def config(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "upsample": self.upsample,
            "low_per_colour": self.low_per_colour,
            "dim": self.dim,
            "width": self.width,
            "client_width": self.client_width,
        }

    def channels(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)`` block-DCT channels of ``images``: what the client keeps and what the
        server receives, ``(B, 30, s, s)`` and ``(B, 162, s, s)`` at the defaults."""
        x = F.interpolate(images, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return split_channels(block_dct(x), self.low_per_colour)

    def client_forward(self, low: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The client model: its embedding (trained with its own head, stage 1) and stage maps."""
        maps, x = [], low
        for stage in self.client.stages:
            x = stage(x)
            maps.append(x)
        return self.client.head(x), maps

    def server_forward(self, high: torch.Tensor, client_maps: list[torch.Tensor]) -> torch.Tensor:
        x = high
        for stage, block, cm in zip(self.server.stages, self.interact, client_maps, strict=True):
            x = block(stage(x), cm.detach())
        return self.server.head(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        low, high = self.channels(images)
        _, maps = self.client_forward(low)
        return self.server_forward(high, maps)
