"""Turn what a user passes as an encoder (a module, a model path, a known model's name, a callable)
into an encoder: one function, used by the API and the CLI alike, so both give the same features.

The tables here are the only place formats and names are listed: :data:`FORMATS` maps a file
suffix to its :class:`~advface_fast.encoders.base.ModelEncoder` class, :data:`NAMED` a known
model's name to the function that loads it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from .base import Encoder, ModelEncoder, TorchEncoder
from .input_spec import InputSpec
from .onnx import OnnxEncoder
from .tflite import TFLiteEncoder


def _sface() -> Encoder:
    from .sface import sface_encoder

    return sface_encoder()


def _mobilefacenet() -> Encoder:
    from .tflite import mobilefacenet_encoder

    return mobilefacenet_encoder()


FORMATS: dict[str, type[ModelEncoder]] = {cls.suffix: cls for cls in (TorchEncoder, OnnxEncoder, TFLiteEncoder)}
NAMED: dict[str, Callable[[], Encoder]] = {"sface": _sface, "mobilefacenet": _mobilefacenet}


def as_encoder(encoder: object, spec: InputSpec | None = None) -> Encoder | None:
    """``None`` stays ``None``; an ``nn.Module`` becomes a :class:`TorchEncoder`; a model path the
    encoder of its suffix in :data:`FORMATS` (``.onnx``, ``.tflite``; any other suffix is read as a
    ``.safetensors`` model of the package), with its known or sidecar contract, or ``spec``; a name
    in :data:`NAMED` (``"sface"``: the SFace model of the ``sface`` extra; ``"mobilefacenet"``: the
    MobileFaceNet TFLite file in the cache folder's ``models/``); any other callable is used as it
    is. The CLI resolves ``--encoder`` with this function, so both give the same features."""
    if encoder is None:
        return None
    if isinstance(encoder, nn.Module):
        return TorchEncoder(encoder, spec=spec)
    if isinstance(encoder, str) and encoder in NAMED:
        return NAMED[encoder]()
    if isinstance(encoder, (str, os.PathLike)):
        suffix = os.path.splitext(os.fspath(encoder))[1]
        return FORMATS.get(suffix, TorchEncoder).from_file(encoder, spec=spec)
    if callable(encoder):
        return encoder  # type: ignore[return-value]
    raise TypeError(f"encoder must be None, an nn.Module, a model path or a callable, got {type(encoder).__name__}")
