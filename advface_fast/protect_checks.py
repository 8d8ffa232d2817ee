"""The checks a protection run makes before it writes anything: the encoder the decoder was trained
for, the decoder's input dimension and
output shape (a probe through the decoder and, for the shadow start, the encoder), the row ids,
the output path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .io.arrays import RowSource
from .models.decoders import ConvDecoder, MLPDecoder


def in_dim(decoder: nn.Module) -> int | None:
    """The feature dimension the decoder takes (``in_dim``, else its first Linear layer), or None."""
    d = getattr(decoder, "in_dim", None)
    if isinstance(d, int):
        return d
    first = next((m for m in decoder.modules() if isinstance(m, nn.Linear)), None)
    return first.in_features if first is not None else None


def probe_output_shape(
    decoder: nn.Module, encoder: object, dim: int, device: torch.device, shadow: bool
) -> tuple[int, ...]:
    """The decoder's output shape per row for features of ``dim``; with ``shadow``, also checks
    that the encoder maps those images back to ``dim`` features."""
    if not shadow and type(decoder) in (MLPDecoder, ConvDecoder) and decoder.in_dim == dim:
        return tuple(decoder.out_shape)  # the package's own decoders state their shapes: no forward
    dtype = next(decoder.parameters()).dtype
    probe = torch.randn(2, dim, device=device, dtype=dtype)
    try:
        with torch.no_grad():
            out = decoder(probe)
    except Exception as exc:
        raise ValueError(f"the decoder cannot take features of dimension {dim}: {exc}") from exc
    if shadow:
        if encoder is None:
            raise ValueError(
                'start="shadow" (the paper\'s start point E(S(z))) needs an encoder; '
                'pass encoder=... or use start="random" or "original"'
            )
        try:
            with torch.no_grad():
                zz = encoder(out)
        except Exception as exc:
            raise ValueError(
                f"the encoder cannot take the decoder's images of shape {tuple(out.shape[1:])}: {exc}"
            ) from exc
        if tuple(zz.shape) != (2, dim):
            raise ValueError(f"the encoder returns features of shape {tuple(zz.shape[1:])}, the gallery has ({dim},)")
    return tuple(out.shape[1:])


def check_row_ids(row_ids: Any, n: int) -> np.ndarray | None:
    if row_ids is None:
        return None
    ids = np.asarray(row_ids.cpu() if isinstance(row_ids, torch.Tensor) else row_ids)
    if ids.shape != (n,) or ids.dtype.kind not in "iu":
        raise ValueError(f"row_ids must be {n} integers, got shape {ids.shape} dtype {ids.dtype}")
    if ids.size and ids.min() < 0:
        raise ValueError("row_ids must be non-negative")
    return ids.astype(np.int64)


def check_out(out: Any, src: RowSource, imgs: RowSource | None, overwrite: bool) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    if path.suffix != ".npy":
        raise ValueError(f"out must be a .npy path, got {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of out does not exist: {path.parent}")
    if path.is_dir():
        raise IsADirectoryError(f"out is a directory ({path}); give the path of an .npy file")
    for s in (src, imgs):
        if s is not None and s.path is not None and path.resolve() == s.path.resolve():
            raise ValueError(f"out is the same file as the {s.name} input ({path}); write to another path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    return path


def check_trained_for(decoder: nn.Module, encoder: object) -> None:
    """Refuse an encoder other than the one the decoder's file says it was trained for (a decoder
    loaded by :func:`~advface_fast.models.serialization.load_model` from a file that records one;
    an encoder without ``fingerprint()`` cannot be compared and passes)."""
    from .encoders.base import same_encoder
    from .models.serialization import recorded_encoder

    recorded = recorded_encoder(decoder)
    got = getattr(encoder, "fingerprint", None)
    if recorded is None or not callable(got):
        return
    path, want = recorded
    got = got()
    if not same_encoder(want, got):
        raise ValueError(
            f"{path} was trained for encoder {want.get('name')!r} (weights {want.get('weights')}, input "
            f"{want.get('input')}), not for the given {got.get('name')!r} (weights {got.get('weights')}, input "
            f"{got.get('input')}): its shadow images would not match this encoder's features"
        )
