"""Key recovery against the keyed rotation: orthogonal Procrustes from known pairs.

Threat model: the attacker holds ``n`` pairs ``(z_i, s_i)`` of a clean template and the stored
(protected, rotated) template of the same enrolment, e.g. an insider who enrolled people it
knows, or who sees enrolment traffic. It estimates the rotation as

    Q^ = argmin_{Q orthogonal} sum_i ||s_i - Q z_i||^2 = U V^T,   U S V^T = svd(sum_i s_i z_i^T)

and undoes it on every stolen template (``Q^^T s``), after which the rest of the suite applies.
With ``n >= D`` pairs of exact rotations the estimate is exact; AdvFace's perturbation makes it
approximate. :func:`rotation_error` is ``||Q^ - Q||_F / sqrt(2 D)`` (0: recovered, ~1: unrelated).
"""

from __future__ import annotations

import torch


def procrustes(clean: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``Q^`` ``(D, D)`` (float64) best mapping ``clean`` rows onto ``stored`` rows."""
    m = stored.double().T @ clean.double()
    u, _, vh = torch.linalg.svd(m)
    return u @ vh


def rotation_error(q_hat: torch.Tensor, q: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(q_hat.double() - q.double()) / (2 * q.shape[0]) ** 0.5)
