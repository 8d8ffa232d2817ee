"""Training a face recognition encoder with a margin softmax (CosFace or ArcFace)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.embed import embed
from ..metrics import pair_distances, verification_accuracy
from ..models.face_encoder import FaceEncoder
from .loop import cosine_lr, run_epochs


class MarginHead(nn.Module):
    """Class weights for a margin softmax: CosFace ``s (cos - m)`` or ArcFace ``s cos(theta + m)``
    on the target class."""

    def __init__(self, dim: int, n_classes: int, kind: str = "cosface", scale: float = 30.0, margin: float = 0.35):
        super().__init__()
        if kind not in ("cosface", "arcface"):
            raise ValueError(f"kind must be 'cosface' or 'arcface', got {kind!r}")
        self.weight = nn.Parameter(torch.randn(n_classes, dim) * 0.01)
        self.kind, self.scale, self.margin = kind, scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(emb) @ F.normalize(self.weight).T
        onehot = F.one_hot(labels, cos.shape[1]).bool()
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
            target = torch.cos(theta + self.margin)
        return F.cross_entropy(self.scale * torch.where(onehot, target, cos), labels)


def verification_pairs(labels: torch.Tensor, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic pairs ``(i, j, issame)`` over samples with identity ``labels``: half genuine
    (same identity, different sample), half impostor (different identities), interleaved."""
    lab = np.asarray(labels)
    rng = np.random.default_rng(seed)
    by_id: dict[int, np.ndarray] = {}
    for k in np.unique(lab):
        by_id[int(k)] = np.flatnonzero(lab == k)
    multi = [k for k, v in by_id.items() if len(v) > 1]
    if not multi or len(by_id) < 2:
        raise ValueError("verification pairs need identities with at least two samples and two identities")
    i, j, same = [], [], []
    for p in range(n_pairs):
        if p % 2 == 0:
            members = by_id[multi[rng.integers(len(multi))]]
            a, b = rng.choice(members, 2, replace=False)
        else:
            ka, kb = rng.choice(list(by_id), 2, replace=False)
            a, b = rng.choice(by_id[int(ka)]), rng.choice(by_id[int(kb)])
        i.append(a)
        j.append(b)
        same.append(p % 2 == 0)
    return np.array(i), np.array(j), np.array(same)


def fit_margin(
    trainable: nn.Module,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    dim: int,
    *,
    key: str = "encoder",
    val_pairs: tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray] | None = None,
    epochs: int,
    batch_size: int,
    lr: float,
    loss: str = "cosface",
    device: torch.device,
    seed: int,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    desc: str = "encoder",
    log: Callable[[str], None] = print,
    run: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``trainable`` (the parameters that learn; ``encoder(images) -> (B, dim)`` uses them)
    with a margin head over ``n_classes`` class indices ``y``: AdamW, the cosine schedule, random
    horizontal flips, bf16 autocast on GPUs. ``val_pairs = (images, i, j, same)`` reports 10-fold
    verification accuracy each epoch. The checkpoint holds ``{key: trainable, "head": head}``.
    Returns the history (:func:`~advface_fast.train.loop.run_epochs`)."""
    head = MarginHead(dim, n_classes, loss).to(device)
    both = nn.ModuleDict({key: trainable, "head": head})
    opt = torch.optim.AdamW(both.parameters(), lr=lr, weight_decay=5e-4)

    def step(idx: torch.Tensor, t: float) -> float:
        cosine_lr(opt, lr, t)
        x = images[idx].to(device)
        flip = torch.rand(len(x), generator=torch.Generator().manual_seed(int(idx[0]))) < 0.5
        x = torch.where(flip.to(device)[:, None, None, None], x.flip(3), x)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss_val = head(encoder(x).float(), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss_val.backward()
        opt.step()
        return float(loss_val.detach())

    def validate() -> dict[str, float]:
        vx, vi, vj, vsame = val_pairs
        emb = embed(encoder, vx, device=device)
        acc, std, _ = verification_accuracy(pair_distances(emb[vi], emb[vj]), vsame)
        return {"val_acc": acc, "val_std": std}

    return run_epochs(
        both,
        opt,
        len(images),
        step,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        validate=validate if val_pairs is not None else None,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        desc=desc,
        log=log,
        run=run,
    )


def train_encoder(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    dim: int = 128,
    width: int = 24,
    epochs: int = 8,
    batch_size: int = 256,
    lr: float = 3e-3,
    loss: str = "cosface",
    device: str | torch.device | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[FaceEncoder, list[dict[str, Any]]]:
    """Train a :class:`FaceEncoder` on ``images`` ``(N, 3, S, S)`` in [-1, 1] with identity
    ``labels`` ``(N,)`` (any int64 ids). With ``val = (images, labels)`` of *other* identities,
    each epoch reports 10-fold verification accuracy on 3000 pairs of them. Returns the encoder
    (eval mode, on the CPU) and the history."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    classes, y = torch.unique(labels, return_inverse=True)
    model = FaceEncoder(images.shape[-1], dim, width).to(dev)
    pairs = (val[0], *verification_pairs(val[1], 3000, seed=seed + 1)) if val is not None else None
    history = fit_margin(
        model,
        model,
        images,
        y,
        len(classes),
        dim,
        key="encoder",
        val_pairs=pairs,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        loss=loss,
        device=dev,
        seed=seed,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        desc="encoder",
        log=log,
    )
    return model.cpu().eval(), history
