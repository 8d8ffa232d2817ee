"""Turn what a user passes as an encoder (a module, a model path, ``"sface"``, a callable) into an
encoder: one function, used by the API and the CLI alike, so both give the same features."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .base import Encoder, TorchEncoder
from .input_spec import InputSpec, spec_for_file
from .onnx import OnnxEncoder


def as_encoder(encoder: object, spec: InputSpec | None = None) -> Encoder | None:
    """``None`` stays ``None``; an ``nn.Module`` becomes a :class:`TorchEncoder`; a path to an
    ``.onnx`` file an :class:`OnnxEncoder` and a ``.tflite`` file a
    :class:`~advface_fast.encoders.tflite.TFLiteEncoder` (with its known or sidecar contract, or ``spec``);
    ``"sface"`` the SFace model of the ``sface`` extra, ``"mobilefacenet"`` the MobileFaceNet
    TFLite file in the cache folder's ``models/``; any other callable is used as it is.
    The CLI resolves ``--encoder`` with this function, so both give the same features."""
    if encoder is None:
        return None
    if isinstance(encoder, nn.Module):
        return TorchEncoder(encoder, spec=spec)
    if isinstance(encoder, str) and encoder == "sface":
        from .sface import sface_encoder

        return sface_encoder()
    if isinstance(encoder, str) and encoder == "mobilefacenet":
        from .tflite import mobilefacenet_encoder

        return mobilefacenet_encoder()
    if isinstance(encoder, (str, os.PathLike)):
        if str(encoder).endswith(".onnx"):
            return OnnxEncoder(encoder, spec=spec)
        if str(encoder).endswith(".tflite"):
            from .tflite import TFLiteEncoder

            return TFLiteEncoder(encoder, spec=spec)
        from ..models.serialization import load_model

        module = load_model(encoder)
        if spec is None:  # a sidecar <model>.json, else the package's images at the model's own size
            known = spec_for_file(encoder)
            size = getattr(module, "image_size", 0)
            spec = known[1] if known else InputSpec(size=int(size), alignment="none")
        return TorchEncoder(module, spec=spec, name=Path(encoder).stem)
    if callable(encoder):
        return encoder  # type: ignore[return-value]
    raise TypeError(f"encoder must be None, an nn.Module, a model path or a callable, got {type(encoder).__name__}")
