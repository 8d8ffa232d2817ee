"""The adaptive attack: learn to undo the protection, then invert.

Threat model: the attacker knows AdvFace and this package (both public), has face images of its
own with E's templates ``z_i``, and runs the defence on them itself, with the shipped shadow
decoder or one it trained, with the settings it knows or guesses, and with its own randomness
(it does not have the defender's key). It then trains a *purifier* ``P`` on the pairs
``(protect(z_i), z_i)``:

    min_P  sum_i 1 - cos(P(protect(z_i)), z_i),   P(v) = normalize(v + MLP(v))

and attacks a stolen template ``t`` with ``decoder(P(t))`` (any decoder trained on clean
templates: the purifier turns the defence back into the case that decoder was trained for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .base import Knowledge, batched


class Purifier(nn.Module):
    """``v -> normalize(v + MLP(v))``, ``(B, D) -> (B, D)``."""

    def __init__(self, dim: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(v + self.net(v), dim=1)


def fit_purifier(
    protected: torch.Tensor,
    clean: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 1024,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Purifier, list[float]]:
    """Train a :class:`Purifier` on ``(protected, clean)`` rows ``(N, D)``; returns it (eval mode)
    and the mean cosine loss of each epoch."""
    torch.manual_seed(seed)
    p = Purifier(clean.shape[1], hidden)
    opt = torch.optim.Adam(p.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in tqdm(range(epochs), desc="purifier", disable=not progress):
        for group in opt.param_groups:  # cosine schedule
            group["lr"] = lr * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * epoch / epochs))).item()
        perm = torch.randperm(len(clean), generator=g)
        total = 0.0
        for a in range(0, len(perm), batch_size):
            idx = perm[a : a + batch_size]
            loss = (1 - nn.functional.cosine_similarity(p(protected[idx]), clean[idx], dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(perm))
    return p.eval(), losses


@dataclass
class PurifierAttack:
    """``decoder(purifier(t))``."""

    name: str
    purifier: nn.Module
    decoder: nn.Module
    knowledge: Knowledge

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor:
        return batched(lambda t: self.decoder(self.purifier(t)), templates)


def purifier_attack(
    name: str,
    emulate: Callable[[torch.Tensor], torch.Tensor],
    own_templates: torch.Tensor,
    decoder: nn.Module,
    knowledge: Knowledge,
    **fit_kwargs,
) -> PurifierAttack:
    """Fit a purifier on the attacker's own templates protected by ``emulate`` (its run of the
    defence) and pair it with ``decoder``."""
    purifier, _ = fit_purifier(emulate(own_templates), own_templates, **fit_kwargs)
    return PurifierAttack(name, purifier, decoder, knowledge)
