"""The keyed feature-space rotation: stored templates ``Q z`` for a secret orthogonal ``Q`` drawn
from the key (see :mod:`advface_fast.keys` for the key material and what the rotation does and does
not protect against). Probes are rotated with the same key at match time (:func:`rotate`); cosine
similarity, hence verification, is unchanged by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from .keys import KeyLike, derive, load_key


def keyed_rotation(key: bytes, dim: int) -> torch.Tensor:
    """The key's secret ``(dim, dim)`` orthogonal matrix, float64 (Haar: QR of a Gaussian matrix
    with the signs of R's diagonal folded in)."""
    return haar_rotation(derive(key, b"rotation/%d" % dim), dim)


def haar_rotation(seed: bytes, dim: int) -> torch.Tensor:
    """A Haar-distributed ``(dim, dim)`` orthogonal matrix (float64) drawn from ``seed`` bytes: QR
    of a Gaussian matrix with the signs of R's diagonal folded in."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    g = np.random.default_rng(int.from_bytes(seed, "big")).standard_normal((dim, dim))
    q, r = np.linalg.qr(g)
    q *= np.sign(np.diag(r))[None, :]
    return torch.from_numpy(q)


def rotate(features: torch.Tensor | np.ndarray, key: KeyLike) -> torch.Tensor | np.ndarray:
    """Apply the key's rotation to ``(N, D)`` features (stored templates or probes): ``z Q^T``.
    Returns the input's type (numpy or torch, its dtype and device)."""
    k = load_key(key)
    is_np = isinstance(features, np.ndarray)
    z = torch.from_numpy(features) if is_np else features
    if z.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {tuple(z.shape)}")
    q = keyed_rotation(k, int(z.shape[1])).to(device=z.device)
    out = (z.to(torch.float64) @ q.T).to(z.dtype)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"rotated features overflow {z.dtype} (inputs near its largest value): store templates at a smaller scale"
        )
    return out.numpy() if is_np else out
