"""Shadow/attacker decoders: feature ``(B, D)`` -> image ``(B, C, H, W)``.

``MLPDecoder`` is the family the fused Triton/CUDA kernels target; ``ConvDecoder`` is a
DCGAN/NbNet-style transposed-convolution generator that runs on the generic (torch) path.
Both record the constructor arguments needed to rebuild them (``config()``), which
:func:`advface_fast.save_model` stores next to the weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import check_act, check_out_act, hidden_activation, output_activation
from .serialization import register_model


def _check_out_shape(out_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in out_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"out_shape must be (C, H, W) with positive sizes, got {tuple(out_shape)}")
    return shape  # type: ignore[return-value]


@register_model
class MLPDecoder(nn.Module):
    """``y = out_act(W_L act(... act(W_1 z + b_1) ...) + b_L)`` reshaped to ``out_shape``.

    Args:
        in_dim: feature dimension D.
        hidden: widths of the hidden layers, any depth (``[]`` gives an affine decoder).
        out_shape: image shape ``(C, H, W)``.
        act: hidden activation, one of ``relu``, ``leaky_relu``, ``gelu`` (exact erf).
        out_act: output activation, one of ``tanh`` (images in [-1, 1]), ``sigmoid`` ([0, 1]),
            ``none``.
        negative_slope: slope of ``leaky_relu`` for negative inputs.

    Input ``(B, D)`` float, output ``(B, C, H, W)`` of the same dtype.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        out_shape: Sequence[int],
        act: str = "leaky_relu",
        out_act: str = "tanh",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        check_act(act)
        check_out_act(out_act)
        if int(in_dim) < 1 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"in_dim and hidden widths must be positive, got {in_dim}, {list(hidden)}")
        self.in_dim = int(in_dim)
        self.hidden = [int(h) for h in hidden]
        self.out_shape = _check_out_shape(out_shape)
        self.act = act
        self.out_act = out_act
        self.negative_slope = float(negative_slope)
        if not math.isfinite(self.negative_slope):  # a model file's NaN would pass load and fail at protect
            raise ValueError(f"negative_slope must be a finite number, got {negative_slope!r}")
        widths = [self.in_dim, *self.hidden, self.out_shape[0] * self.out_shape[1] * self.out_shape[2]]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def config(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "hidden": self.hidden,
            "out_shape": list(self.out_shape),
            "act": self.act,
            "out_act": self.out_act,
            "negative_slope": self.negative_slope,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers[:-1]:
            h = hidden_activation(layer(h), self.act, self.negative_slope)
        y = output_activation(self.layers[-1](h), self.out_act)
        return y.reshape(z.shape[0], *self.out_shape)


def _upsampling_plan(height: int, width: int) -> tuple[int, int, int]:
    """Number of x2 upsamplings and the start size: as many as keep the start size >= 4."""
    n = 0
    while height % (2 ** (n + 1)) == 0 and width % (2 ** (n + 1)) == 0 and min(height, width) // 2 ** (n + 1) >= 4:
        n += 1
    if n == 0:
        raise ValueError(
            f"ConvDecoder needs H and W divisible by 2 with H/2, W/2 >= 4 (e.g. 32, 64, 112), got {height}x{width}"
        )
    return n, height // 2**n, width // 2**n


@register_model
class ConvDecoder(nn.Module):
    """Transposed-convolution generator (DCGAN / NbNet style).

    ``Linear(D -> C0*h0*w0)`` -> ``n`` blocks of ``ConvTranspose2d(4, stride 2) + BatchNorm + ReLU``
    (channels halving from ``C0 = base_channels * 2**(n-1)``) -> ``Conv2d(3x3)`` -> ``out_act``.
    ``n`` is the number of doublings that takes a start size of at least 4 to ``(H, W)``
    (64 -> 4x4 start, n = 4; 112 -> 7x7, n = 4).

    Input ``(B, D)`` float, output ``(B, C, H, W)``. Contains BatchNorm, so protection runs it in
    eval mode (which also keeps rows independent of their batch).
    """

    def __init__(
        self,
        in_dim: int,
        out_shape: Sequence[int] = (3, 64, 64),
        base_channels: int = 32,
        out_act: str = "tanh",
    ) -> None:
        super().__init__()
        check_out_act(out_act)
        self.in_dim = int(in_dim)
        self.out_shape = _check_out_shape(out_shape)
        self.base_channels = int(base_channels)
        self.out_act = out_act
        n, h0, w0 = _upsampling_plan(self.out_shape[1], self.out_shape[2])
        chans = [self.base_channels * 2 ** (n - 1 - i) for i in range(n)] + [self.base_channels]
        self._start = (chans[0], h0, w0)
        self.project = nn.Linear(self.in_dim, chans[0] * h0 * w0)
        blocks: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            blocks += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(chans[-1], self.out_shape[0], 3, padding=1)

    def config(self) -> dict[str, Any]:
        return {
            "in_dim": self.in_dim,
            "out_shape": list(self.out_shape),
            "base_channels": self.base_channels,
            "out_act": self.out_act,
        }

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project(z)).reshape(z.shape[0], *self._start)
        return output_activation(self.to_image(self.blocks(h)), self.out_act)
