"""The epoch loop shared by the trainers: seeded shuffling, progress bar, checkpoint and resume."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint


def run_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    n: int,
    step: Callable[[torch.Tensor, float], float],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    validate: Callable[[], dict[str, float]] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    desc: str = "train",
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    run: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``epochs`` epochs of ``step(batch indices, t) -> loss`` over ``n`` samples, where
    ``t`` in [0, 1) is the fraction of the whole run done (a stateless schedule: see
    :func:`cosine_lr`).

    The order of epoch ``e`` is a permutation drawn from ``(seed, e)``; with ``checkpoint`` the
    state is saved after every epoch and, with ``resume``, a run restarts after the last saved
    epoch. ``stop_after`` ends the call after that many epochs of this call (to test resuming).
    Returns the history: one dict per epoch with the mean loss and the validation metrics.
    """
    history: list[dict[str, Any]] = []
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).exists():
        saved = load_checkpoint(checkpoint, model, optimizer, expect_run=run)
        start, history = int(saved["epoch"]), list(saved["history"])
        log(f"{desc}: resumed from {checkpoint} after epoch {start}")
    end = epochs if stop_after is None else min(epochs, start + stop_after)
    for epoch in range(start, end):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        batches = [b for b in order.split(batch_size) if len(b) == batch_size] or [order]
        total = 0.0
        with tqdm(
            batches, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress, leave=False, dynamic_ncols=True
        ) as bar:
            for i, idx in enumerate(bar):
                total += step(idx, (epoch + i / len(batches)) / epochs)
                bar.set_postfix(loss=f"{total / (i + 1):.4f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / len(batches)}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                record.update(validate())
        history.append(record)
        log(
            f"{desc} epoch {epoch + 1}/{epochs}: "
            + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "epoch"
            )
        )
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, {"epoch": epoch + 1, "history": history, "run": run or {}})
    model.eval()
    return history


def cosine_lr(optimizer: torch.optim.Optimizer, base: float, t: float, warmup: float = 0.05) -> None:
    """Set the learning rate for run fraction ``t``: linear warm-up, then cosine decay to 0. A pure
    function of ``t``, so a resumed run needs no scheduler state."""
    import math

    lr = base * t / warmup if t < warmup else base * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (1 - warmup)))
    for g in optimizer.param_groups:
        g["lr"] = lr
