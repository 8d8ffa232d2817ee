"""Training feature-to-image decoders: the defender's shadow decoder (equation 1) and attackers."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..encoders.embed import embed
from ..metrics import psnr, ssim
from .loop import cosine_lr, run_epochs


def fit_decoder(
    features: torch.Tensor,
    images: torch.Tensor,
    decoder: nn.Module,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    run: dict[str, Any] | None = None,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Fit ``decoder`` to map ``features`` ``(N, D)`` to ``images`` ``(N, C, H, W)`` with the L1
    loss of equation (1), Adam and a cosine schedule (bf16 autocast on GPUs). With ``val =
    (features, images)`` each epoch reports L1, PSNR and SSIM on it. Trains ``decoder`` in place
    and returns it (eval mode, CPU) with the history. Any architecture works: this trains shadow
    decoders and attackers alike (an adaptive attacker passes protected features). ``run``:
    settings a resumed checkpoint must share (see :func:`~advface_fast.train.loop.run_epochs`)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    decoder.to(dev)
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)

    def step(idx: torch.Tensor, t: float) -> float:
        cosine_lr(opt, lr, t)
        z, x = features[idx].to(dev), images[idx].to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = (decoder(z).float() - x).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def validate() -> dict[str, float]:
        zv, xv = val
        rec = torch.cat([decoder(zv[a : a + 1024].to(dev)).float().cpu() for a in range(0, len(zv), 1024)])
        return {
            "val_l1": float((rec - xv).abs().mean()),
            "val_psnr": float(psnr(rec, xv).mean()),
            "val_ssim": float(ssim(rec, xv).mean()),
        }

    history = run_epochs(
        decoder,
        opt,
        len(features),
        step,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        validate=validate if val is not None else None,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        desc="decoder",
        log=log,
        stop_after=stop_after,
        run=run,
    )
    return decoder.cpu().eval(), history


def train_decoder(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    decoder: nn.Module,
    *,
    val_images: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train ``decoder`` to invert ``encoder`` on ``images`` ``(N, C, H, W)``: equation (1),
    ``sum_i ||x_i - S(E(x_i))||_1``. The encoder is run once (frozen, no flip) to get the features;
    ``val_images`` get the same treatment for validation. Other keyword arguments go to
    :func:`fit_decoder`."""
    dev = kwargs.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    feats = embed(encoder, images, flip=False, device=dev)
    val = (embed(encoder, val_images, flip=False, device=dev), val_images) if val_images is not None else None
    return fit_decoder(feats, images, decoder, val=val, **kwargs)
