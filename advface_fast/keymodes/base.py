"""What every key mode is: a keyed partition of records into groups, and an independent secret
rotation per group."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from ..keys import KeyLike, keyed_digests, load_key


class KeyMode(ABC):
    """A partition of records into groups (:meth:`groups`) and a secret ``(D, D)`` rotation per
    group (:meth:`rotation`), both drawn from one key. Rotations are cached per ``(group, D)``."""

    name: str = "abstract"

    def __init__(self, key: KeyLike) -> None:
        self._key = load_key(key)
        self._cache: dict[tuple[int, int, torch.dtype], torch.Tensor] = {}

    @abstractmethod
    def groups(self, ids: np.ndarray, labels: Sequence[str] | None = None) -> np.ndarray:
        """The group (int64 ``(N,)``) of each record, from its enrolment id ``(N,)`` int64 and its
        identity label (modes that need labels refuse ``None``)."""

    @abstractmethod
    def _draw(self, group: int, dim: int) -> torch.Tensor:
        """The group's ``(dim, dim)`` float64 orthogonal matrix, drawn from the key."""

    def rotation(self, group: int, dim: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The group's ``(dim, dim)`` matrix in ``dtype`` (drawn in float64; cached)."""
        k = (int(group), int(dim), dtype)
        if k not in self._cache:
            q = self._draw(int(group), int(dim)) if dtype == torch.float64 else self.rotation(group, dim)
            self._cache[k] = q.to(dtype)
        return self._cache[k]

    def apply(self, z: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
        """Records of ``z`` ``(N, D)`` float: row ``i`` rotated by its group's matrix, ``z_i Q_g^T``
        (computed in float64, returned in ``z``'s dtype). ``groups`` ``(N,)`` from :meth:`groups`."""
        return self._per_group(z, groups, inverse=False)

    def invert(self, records: torch.Tensor, groups: np.ndarray) -> torch.Tensor:
        """The templates behind ``records`` ``(N, D)`` (the inverse of :meth:`apply`): row ``i``
        times its group's matrix, ``r_i Q_g``; for holders of the key (re-keying)."""
        return self._per_group(records, groups, inverse=True)

    def _per_group(self, z: torch.Tensor, groups: np.ndarray, inverse: bool) -> torch.Tensor:
        g = np.asarray(groups, dtype=np.int64)
        if z.ndim != 2 or len(g) != len(z):
            raise ValueError(f"expected (N, D) templates and N groups, got {tuple(z.shape)} and {len(g)}")
        if len(g) == 0:
            return z.clone()
        out = torch.empty(z.shape, dtype=torch.float64, device=z.device)
        zd = z.to(torch.float64)
        order = np.argsort(g, kind="stable")
        for rows in np.split(order, np.flatnonzero(np.diff(g[order])) + 1):
            r = torch.from_numpy(rows).to(z.device)
            q = self.rotation(int(g[rows[0]]), z.shape[1]).to(z.device)
            out[r] = zd[r] @ (q if inverse else q.T)
        res = out.to(z.dtype)
        if not bool(torch.isfinite(res).all()):
            raise ValueError(f"rotated templates overflow {z.dtype}: store templates at a smaller scale")
        return res

    def probe_for(self, probe: torch.Tensor, group: int) -> torch.Tensor:
        """Probes ``(B, D)`` rotated for comparison with the records of ``group``."""
        return self.apply(probe, np.full(len(probe), int(group), dtype=np.int64))


def keyed_hash64(key: bytes, purpose: bytes, values: Sequence[bytes]) -> np.ndarray:
    """63-bit keyed hashes (int64 ``(N,)``) of byte strings under ``derive(key, purpose)``."""
    return np.array([h >> 1 for h in keyed_digests(key, purpose, list(values))], dtype=np.int64)
