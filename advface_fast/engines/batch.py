"""One batch of the AdvFace protection: shadow image, start point, the PGD loop, re-normalisation.

The loop itself (``pgd``) comes from an engine (:mod:`advface_fast.engines.registry`); everything
around it is shared by all engines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from ..errors import NonFiniteError
from ..settings import ProtectParams
from .reference import renorm_ref
from .seeding import row_uniform

PGDFn = Callable[..., torch.Tensor]  # pgd_ref's signature plus precision=


class LoopEngine(Protocol):
    """What :func:`protect_batch` needs of an engine (:class:`~advface_fast.engines.registry.Engine` is one):
    the loop ``pgd`` and the matching forward ``decode``. A protocol, so that this module does not
    import the registry that imports it."""

    pgd: PGDFn
    decode: Callable[..., torch.Tensor]


@torch.no_grad()
def protect_batch(
    z: torch.Tensor,
    row_ids: torch.Tensor,
    decoder: nn.Module,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None,
    params: ProtectParams,
    backend: LoopEngine,
    images: torch.Tensor | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Protect one batch.

    Args:
        z: stored features ``(B, D)`` in the compute dtype, on the compute device.
        row_ids: ``(B,)`` int64 global ids of the rows (key of the random start).
        decoder: frozen shadow decoder in eval mode.
        encoder: face encoder (required for ``start="shadow"``).
        params: the run's settings.
        backend: the engine (its ``decode`` and ``pgd``).
        images: online mode: the original images ``(B, *out_shape)``, the L1 target instead of the
            shadow image.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` GEMMs inside the loop (see the engine registry).

    Returns the protected features ``(B, D)``, same dtype and device as ``z``.
    """
    target = backend.decode(decoder, z, precision) if images is None else images  # x~, eq. (3), or x online
    if images is None and not bool(torch.isfinite(target).all()):
        # NaN images give NaN signs -> zero steps: the "protected" rows would be the start point
        raise NonFiniteError(
            "the shadow decoder produced NaN or Inf images for these features (NaN weights or an overflow): "
            "nothing was protected"
        )
    if params.start == "shadow":
        if encoder is None:
            raise ValueError('start="shadow" needs an encoder')
        centre = encoder(target).to(z.dtype)  # z~ = E(x~)
        if centre.shape != z.shape:
            raise ValueError(f"the encoder returned features of shape {tuple(centre.shape)}, expected {tuple(z.shape)}")
        if not bool(torch.isfinite(centre).all()):
            raise NonFiniteError(
                "the encoder returned NaN or Inf features for the shadow images: nothing was protected"
            )
        z0 = centre
    else:
        centre = z
        z0 = z
        if params.start == "random":
            noise = row_uniform(params.seed, row_ids, z.shape[1], device=z.device, dtype=z.dtype)
            z0 = torch.clamp(z + params.eps * noise, z - params.eps, z + params.eps)
    zt = backend.pgd(decoder, z0, centre, target, params.eps, params.alpha, params.steps, precision=precision)
    if params.renorm:
        zt = renorm_ref(zt, torch.linalg.vector_norm(z, dim=1))
    if not bool(torch.isfinite(zt).all()):
        raise NonFiniteError(
            f"protection produced NaN or Inf (features up to {float(z.abs().max()):.3g}, eps {params.eps:g}, alpha "
            f"{params.alpha:g}): the settings or the features are out of range; nothing was written for these rows"
        )
    return zt
