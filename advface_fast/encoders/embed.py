"""Run an encoder over a tensor of images in batches: the inference helper every trainer,
evaluation and attack uses."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


@torch.no_grad()
def embed(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch: int = 1024,
    flip: bool = True,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """L2-normalised embeddings; with ``flip``, of the image plus its mirror (the insightface protocol)."""
    out = []
    for a in range(0, len(images), batch):
        x = images[a : a + batch].to(device)
        e = encoder(x)
        if flip:
            e = e + encoder(x.flip(3))
        out.append(F.normalize(e.float(), dim=1).cpu())
    return torch.cat(out)
