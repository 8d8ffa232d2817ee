"""Train a model once and keep it: the one model cache of the evaluations and both threat suites
(decoders, identity-loss decoders, the synthetic world's judge)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..models.serialization import load_model, read_model_header, save_model
from ..train import fit_decoder


def cached_model(
    path: Path,
    train: Callable[[], nn.Module],
    log: Callable[[str], None],
    label: str,
    metadata: dict[str, str] | None = None,
) -> nn.Module:
    """The model saved at ``path``, else ``train()``'s, saved there (with ``metadata``) and logged
    with its training time. A file at ``path`` that is not a model of the package is trained over."""
    if path.is_file():
        try:
            read_model_header(path)
        except ValueError:
            log(f"{label}: {path} is not a model file; training it again")
        else:
            log(f"{label}: reusing {path}")
            return load_model(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    model = train()
    save_model(model, path, metadata=metadata)
    log(f"{label}: trained in {time.time() - t:.0f} s")
    return model


def cached_decoder(
    path: Path,
    make: Callable[[], nn.Module],
    features: torch.Tensor,
    images: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    label: str,
    log: Callable[[str], None],
) -> nn.Module:
    """The decoder saved at ``path``, else ``make()`` fitted from ``features`` ``(N, D)`` to
    ``images`` ``(N, C, H, W)`` (:func:`~advface_fast.train.fit_decoder` with its default schedule)
    and saved there."""

    def train() -> nn.Module:
        model, hist = fit_decoder(
            features, images, make(), epochs=epochs, seed=seed, progress=False, log=lambda s: None
        )
        log(f"{label}: final L1 {hist[-1]['loss']:.3f}")
        return model

    return cached_model(path, train, log, label)
