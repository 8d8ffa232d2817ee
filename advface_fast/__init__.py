"""advface_fast: AdvFace (CVPR 2023) protection of face-recognition feature galleries, fast.

Stored features ``z = E(x)`` are replaced by adversarial features that still identify the person
but make reconstruction (template inversion) attacks fail. See :func:`protect`.
"""

from __future__ import annotations

from .encoders.base import Encoder, TorchEncoder
from .encoders.input_spec import InputSpec
from .encoders.onnx import OnnxEncoder
from .encoders.tflite import TFLiteEncoder
from .engines import available_backends
from .errors import BackendUnavailableError, GalleryFormatError, ImageReadError, ModelFormatError, ResumeMismatchError
from .models.decoders import ConvDecoder, MLPDecoder
from .models.defaults import load_default
from .models.face_encoder import FaceEncoder
from .models.serialization import load_model, register_model, save_model
from .protector import Protector, protect
from .settings import ProtectParams, RunSettings

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "ConvDecoder",
    "Encoder",
    "FaceEncoder",
    "GalleryFormatError",
    "ImageReadError",
    "InputSpec",
    "MLPDecoder",
    "ModelFormatError",
    "OnnxEncoder",
    "ProtectParams",
    "Protector",
    "ResumeMismatchError",
    "RunSettings",
    "TFLiteEncoder",
    "TorchEncoder",
    "available_backends",
    "load_default",
    "load_model",
    "protect",
    "register_model",
    "save_model",
]
