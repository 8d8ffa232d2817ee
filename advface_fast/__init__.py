"""advface_fast: AdvFace (CVPR 2023) protection of face-recognition feature galleries, fast.

Stored features ``z = E(x)`` are replaced by adversarial features that still identify the person
but make reconstruction (template inversion) attacks fail. See :func:`protect`.
"""

from __future__ import annotations

from .decoders import ConvDecoder, MLPDecoder
from .defaults import load_default
from .encoders import Encoder, OnnxEncoder, TorchEncoder
from .engines import available_backends
from .errors import BackendUnavailableError, GalleryFormatError, ImageReadError, ModelFormatError, ResumeMismatchError
from .face_encoder import FaceEncoder
from .input_spec import InputSpec
from .protector import Protector, protect
from .serialization import load_model, register_model, save_model
from .settings import ProtectParams, RunSettings
from .tflite_encoder import TFLiteEncoder

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
