"""Decoders trained with an identity loss through the face encoder (a white-box attacker).

Loss per batch: ``|D(z) - x|_1 + lam * (1 - cos(E(D(z)), z))``: the reconstruction must look like
the face *and* be recognised as the template by ``E``. An attacker who has the recognition model
(it ships in a package, or was stolen with the templates) can train this; it is the strongest
decoder family of the threat-model literature. ``E`` must be differentiable
(:class:`~advface_fast.encoders.base.TorchEncoder`, e.g. :func:`~advface_fast.encoders.sface.sface_torch_encoder`).

Typical use fine-tunes an L1-trained decoder for a few hundred steps (through a real encoder a
step costs ~100x a plain L1 step on a CPU).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm


def finetune_identity(
    decoder: nn.Module,
    features: torch.Tensor,
    images: torch.Tensor,
    encoder_features: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int = 300,
    batch_size: int = 16,
    lam: float = 1.0,
    lr: float = 2e-4,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Fine-tune ``decoder`` ``(N, D) -> (N, C, H, W)`` on ``(features, images)`` with the L1 +
    identity loss (module docstring). ``encoder_features`` maps decoder outputs to unit features
    with autograd (``TorchEncoder.features``). Returns the decoder (eval mode) and a history with
    the mean L1 and cosine of each tenth of the run."""
    if steps < 1 or batch_size < 1 or lam < 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1, lam >= 0; got {steps}, {batch_size}, {lam}")
    g = torch.Generator().manual_seed(seed)
    decoder.train()
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    history, l1s, coss = [], [], []
    for step in tqdm(range(steps), desc="identity-loss decoder", disable=not progress):
        idx = torch.randint(0, len(features), (batch_size,), generator=g)
        z, x = features[idx], images[idx]
        rec = decoder(z)
        l1 = (rec - x).abs().mean()
        cos = torch.nn.functional.cosine_similarity(encoder_features(rec), z, dim=1).mean()
        loss = l1 + lam * (1 - cos)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        l1s.append(float(l1.detach()))
        coss.append(float(cos.detach()))
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            history.append({"step": step + 1, "l1": sum(l1s) / len(l1s), "cosine": sum(coss) / len(coss)})
            l1s, coss = [], []
    log(
        f"identity-loss fine-tuning: L1 {history[0]['l1']:.3f} -> {history[-1]['l1']:.3f}, "
        f"cosine to the template {history[0]['cosine']:.3f} -> {history[-1]['cosine']:.3f}"
    )
    return decoder.eval(), history
