"""Embeddings of aligned faces, cached on disk per encoder.

The key hashes the faces' pixels, the encoder's :meth:`fingerprint` (weights and input contract)
and the settings, so a cache entry is reused exactly when the same function would be applied to
the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..io.cache import default_cache_dir


def faces_to_tensor(faces: np.ndarray, size: int | None = None) -> torch.Tensor:
    """``(N, H, W, 3) uint8`` -> ``(N, 3, S, S) float32`` in [-1, 1] (area-resized to ``size``)."""
    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return x


def encoder_key(encoder: object) -> str:
    fp = getattr(encoder, "fingerprint", None)
    if fp is None:
        raise TypeError(f"caching needs an encoder with fingerprint() (TorchEncoder, OnnxEncoder), got {type(encoder)}")
    return json.dumps(fp(), sort_keys=True)


def embed_faces(
    encoder: object,
    faces: np.ndarray | torch.Tensor,
    *,
    flip: bool = False,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str = "embedding",
) -> torch.Tensor:
    """``encoder`` over faces (``(N, H, W, 3) uint8`` or ``(N, 3, H, W)`` float in [-1, 1]):
    ``(N, D) float32``; with ``flip``, the L2-normalised sum of the face's and its mirror's
    embeddings. Cached under ``cache_dir`` (default :func:`default_cache_dir`; ``""``: off)."""
    from tqdm.auto import tqdm

    h = hashlib.sha256(encoder_key(encoder).encode())
    arr = faces.numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    h.update(f"{arr.shape}{arr.dtype}flip={flip}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    path = None
    if cache_dir != "":
        path = (
            (Path(cache_dir) if cache_dir is not None else default_cache_dir())
            / "embeddings"
            / f"{h.hexdigest()[:32]}.npy"
        )
        if path.is_file():
            return torch.from_numpy(np.load(path))
    out = []
    for a in tqdm(range(0, len(arr), batch_size), desc=desc, disable=not progress):
        chunk = arr[a : a + batch_size]
        x = faces_to_tensor(chunk) if chunk.dtype == np.uint8 else torch.from_numpy(np.ascontiguousarray(chunk)).float()
        z = encoder(x)
        if flip:
            z = torch.nn.functional.normalize(z + encoder(x.flip(3)), dim=1)
        out.append(z.float())
    result = torch.cat(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
        np.save(tmp, result.numpy())
        os.replace(tmp, path)
    return result
