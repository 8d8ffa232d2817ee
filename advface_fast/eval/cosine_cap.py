"""A recognition-aware variant of AdvFace's step, measured beside the paper's on the operating-point
frontier: the budget is the template's cosine to its start, not an L-inf ball.

Why the paper's step costs recognition (measured on LFW with SFace, at eps 0.08 against uniform
noise in the same ball; ``benchmarks/step_variants.py``): the sign steps end in the ball's corners
and partly point against the template itself, so the protected template keeps a mean cosine of
about 0.80 to its clean start against noise's 0.89. A genuine probe's score falls with that cosine
(by 0.13 against noise's 0.07), while impostor scores barely move and keep their spread. What
recognition pays for is the angle a template is turned by; so this variant spends a fixed angle.

For unit templates ``u0 = z / ||z||``, a budget ``min_cosine = cos(theta)`` and the target
``x~ = S(u0)``:

    u_1     = u0 turned by theta / 2 towards a random tangent direction (seeded per row)
    g_t     = d/du ||S(u_t) - x~||_1,  t_t = g_t - (g_t . u_t) u_t    (the tangent part)
    u_{t+1} = cap( cos(a) u_t + sin(a) t_t / ||t_t|| )                 (a geodesic step of angle a)
    cap(u)  = u if u . u0 >= cos(theta), else cos(theta) u0 + sin(theta) w / ||w||,
              w = u - (u . u0) u0                                        (back onto the cap's rim)

with step angle ``a = theta / 5`` by default, and the result rescaled to ``||z||``. Every row pays
the same cosine, so every genuine score against a probe close to its template falls by about the
same amount, where the L-inf ball's cost varies from row to row.

This is an evaluation method (the reference loop in PyTorch, like the baselines), not one of the
package's engines: the package protects with the paper's step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..engines.reference import l1_input_grad_ref
from ..engines.seeding import row_uniform


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _tangent(v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The part of ``v`` orthogonal to the unit rows ``u``."""
    return v - (v * u).sum(1, keepdim=True) * u


def cap_project(u: torch.Tensor, u0: torch.Tensor, min_cosine: float) -> torch.Tensor:
    """Unit rows ``u`` ``(B, D)`` moved onto the spherical cap ``u . u0 >= min_cosine`` around the
    unit rows ``u0``: rows inside are unchanged; rows outside go to the rim along the great circle
    through ``u0``."""
    c = (u * u0).sum(1, keepdim=True)
    rim = min_cosine * u0 + math.sqrt(max(0.0, 1 - min_cosine**2)) * _unit(_tangent(u, u0))
    return torch.where(c >= min_cosine, u, rim)


def cosine_cap(
    decoder: nn.Module,
    z: torch.Tensor,
    min_cosine: float,
    *,
    steps: int = 10,
    step_angle: float | None = None,
    seed: int = 0,
    row_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Protect ``z`` ``(B, D)`` float32 (any norms, none zero) with decoder ``S`` ``(B, D) -> (B, ...)``
    inside the cap ``cos(result, z) >= min_cosine`` (in ``(-1, 1)``); returns ``(B, D)`` at the
    input norms. ``row_ids`` ``(B,)`` int64 seed the random start per row (default: ``0..B-1``),
    so a row's result does not depend on its batch."""
    if not -1 < min_cosine < 1:
        raise ValueError(f"min_cosine must be in (-1, 1), got {min_cosine}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
    if not bool((norms > 0).all()) or not bool(torch.isfinite(z).all()):
        raise ValueError("every template must be finite and non-zero")
    theta = math.acos(min_cosine)
    a = theta / 5 if step_angle is None else step_angle
    u0 = z / norms
    with torch.no_grad():
        target = decoder(u0)
    ids = torch.arange(len(z)) if row_ids is None else torch.as_tensor(row_ids)
    r = _unit(_tangent(row_uniform(seed ^ 0xCA9, ids, z.shape[1]).to(z), u0))
    u = math.cos(theta / 2) * u0 + math.sin(theta / 2) * r
    for _ in range(steps):
        t = _tangent(l1_input_grad_ref(decoder, u, target), u)
        u = cap_project(_unit(math.cos(a) * u + math.sin(a) * _unit(t)), u0, min_cosine)
    return u * norms
