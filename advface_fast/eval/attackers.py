"""Reconstruction attackers of architectures the defender did not use.

The defender's shadow decoder is an :class:`~advface_fast.models.decoders.MLPDecoder` 128-512-1024;
the attackers differ in width, depth, activation, or are convolutional:

- ``mlp_wide``: MLP 1024-2048, relu
- ``mlp_deep``: MLP 512-512-512-512, gelu
- ``conv``: transposed-convolution generator (DCGAN/NbNet style)
- ``resup``: nearest-neighbour upsampling + 3x3 convolutions with residual blocks
- ``shipped_conv``: the ``conv`` attacker shipped with the default models (trained on 16,000
  images of 1,000 other people for 20 epochs), which saves the evaluation its longest training
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..models.activations import output_activation
from ..models.decoders import ConvDecoder, MLPDecoder, _check_out_shape, _upsampling_plan
from ..models.serialization import register_model


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, padding=1),
            nn.BatchNorm2d(c),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


@register_model
class ResUpDecoder(nn.Module):
    """``Linear -> (upsample x2, conv3x3, residual block) * n -> conv3x3 -> out_act``; input
    ``(B, D)``, output ``(B, C, H, W)``."""

    def __init__(
        self, in_dim: int, out_shape: Sequence[int] = (3, 32, 32), base_channels: int = 32, out_act: str = "tanh"
    ) -> None:
        super().__init__()
        self.in_dim, self.out_shape = int(in_dim), _check_out_shape(out_shape)
        self.base_channels, self.out_act = int(base_channels), out_act
        n, h0, w0 = _upsampling_plan(self.out_shape[1], self.out_shape[2])
        c = self.base_channels * 2
        self._start = (c, h0, w0)
        self.project = nn.Linear(self.in_dim, c * h0 * w0)
        layers: list[nn.Module] = []
        for _ in range(n):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, self.base_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                _ResBlock(self.base_channels),
            ]
            c = self.base_channels
        self.body = nn.Sequential(*layers)
        self.to_image = nn.Conv2d(c, self.out_shape[0], 3, padding=1)

    def config(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "out_shape": list(self.out_shape),
            "base_channels": self.base_channels,
            "out_act": self.out_act,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.project(z)).reshape(z.shape[0], *self._start)
        return output_activation(self.to_image(self.body(h)), self.out_act)


@register_model
class ChannelInverter(nn.Module):
    """Frequency channels ``(B, C_in, h, w)`` -> image ``(B, C, H, W)``: 3x3 convolutions and
    residual blocks at ``h x w``, then (upsample x2, conv3x3, residual block) until ``H x W``.
    The attacker of what a split-input method's server receives (DuetFace's high frequencies)."""

    def __init__(self, in_channels: int, in_side: int, out_shape: Sequence[int] = (3, 32, 32), width: int = 64) -> None:
        super().__init__()
        self.in_channels, self.in_side, self.width = int(in_channels), int(in_side), int(width)
        self.out_shape = _check_out_shape(out_shape)
        side, c = self.in_side, self.width
        layers: list[nn.Module] = [nn.Conv2d(self.in_channels, c, 3, padding=1), nn.ReLU(inplace=True), _ResBlock(c)]
        while side < self.out_shape[1]:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1)]
            layers += [nn.ReLU(inplace=True), _ResBlock(c // 2)]
            side, c = side * 2, c // 2
        if side != self.out_shape[1] or self.out_shape[1] != self.out_shape[2]:
            raise ValueError(f"cannot upsample {self.in_side} by powers of 2 to {self.out_shape[1:]}")
        self.body = nn.Sequential(*layers, nn.Conv2d(c, self.out_shape[0], 3, padding=1))

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "in_side": self.in_side,
            "out_shape": list(self.out_shape),
            "width": self.width,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))


ATTACKERS = ("shipped_conv", "mlp_wide", "mlp_deep", "resup", "conv")


def make_attacker(name: str, dim: int, out_shape: Sequence[int]) -> nn.Module:
    """A fresh attacker of architecture ``name`` (one of :data:`ATTACKERS`)."""
    if name == "mlp_wide":
        return MLPDecoder(dim, [1024, 2048], out_shape, act="relu")
    if name == "mlp_deep":
        return MLPDecoder(dim, [512, 512, 512, 512], out_shape, act="gelu")
    if name == "conv":
        return ConvDecoder(dim, out_shape, base_channels=32)
    if name == "resup":
        return ResUpDecoder(dim, out_shape, base_channels=16)
    raise ValueError(f"unknown attacker {name!r}; choose from {', '.join(ATTACKERS)}")
