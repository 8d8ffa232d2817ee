"""Training DuetFace in two stages, with the shipped encoder's margin loss and budget.

Stage 1 trains the client model on the low-frequency channels with its own CosFace head (the
paper's warm-up); stage 2 freezes it and trains the server model and the interactive blocks with
a CosFace head on the server's embedding. Each stage gets the shipped encoder's budget (the same
images, epochs, batch size, learning rate, schedule and flip augmentation as
:func:`~advface_fast.train.train_encoder`), and each is checkpointed and resumable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..train.encoder import fit_margin, verification_pairs
from .model import DuetFace


class _ClientEncoder(nn.Module):
    """The client model alone, images -> its embedding (stage 1 and its validation)."""

    def __init__(self, model: DuetFace) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        low, _ = self.model.channels(images)
        return self.model.client_forward(low)[0]


def train_duetface(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    model: DuetFace | None = None,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[DuetFace, dict[str, list[dict[str, Any]]]]:
    """Train :class:`DuetFace` on ``images`` ``(N, 3, S, S)`` in [-1, 1] with identity ``labels``.
    With ``val = (images, labels)`` of other people, each epoch reports 10-fold verification
    accuracy (client embedding in stage 1, server embedding in stage 2). Returns the model (eval
    mode, CPU) and the histories ``{"client": [...], "server": [...]}``."""
    torch.manual_seed(seed)
    model = model or DuetFace(image_size=images.shape[-1])
    classes, y = torch.unique(labels, return_inverse=True)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    pairs = (val[0], *verification_pairs(val[1], 3000, seed=seed + 1)) if val is not None else None

    def stage(name: str, trainable: nn.Module, encoder: nn.Module) -> list[dict[str, Any]]:
        return fit_margin(
            trainable,
            encoder,
            images,
            y,
            len(classes),
            model.dim,
            key="model",
            val_pairs=pairs,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            device=torch.device("cpu"),
            seed=seed + (0 if name == "client" else 1),
            checkpoint=ckpt / f"duetface-{name}.ckpt" if ckpt is not None else None,
            progress=progress,
            desc=f"duetface {name}",
            log=log,
            run={"stage": name, "config": model.config(), "n": len(images), "epochs": epochs},
        )

    client_net = nn.ModuleList([model.client])
    hist_client = stage("client", client_net, _ClientEncoder(model))
    model.client.eval().requires_grad_(False)  # frozen after stage 1, BatchNorm statistics too

    class _Server(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.server, self.interact = model.server, model.interact

        def train(self, mode: bool = True) -> _Server:
            super().train(mode)
            model.client.eval()
            return self

    server_net = _Server()
    hist_server = stage("server", server_net, model)
    return model.cpu().eval(), {"client": hist_client, "server": hist_server}
