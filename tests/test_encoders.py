"""Encoder adapters: TorchEncoder and OnnxEncoder (onnxruntime) on models the tests build."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import LinearEncoder

import advface_fast as af

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _onnx_linear(path, weight: np.ndarray, batch, extra_unused_input: bool = False):
    """ONNX graph: Flatten -> MatMul(W^T). With extra_unused_input, the file also declares its
    initialiser as a graph input plus an input no node reads (as SFace ships, design §6)."""
    c, h, w = 3, 4, 4
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, c, h, w])
    y = helper.make_tensor_value_info("feat", TensorProto.FLOAT, [batch, weight.shape[0]])
    init = numpy_helper.from_array(weight.T.astype(np.float32), "W")
    nodes = [helper.make_node("Flatten", ["data"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["feat"])]
    inputs = [x]
    if extra_unused_input:
        inputs += [
            helper.make_tensor_value_info("W", TensorProto.FLOAT, list(weight.T.shape)),
            helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1]),
        ]
    graph = helper.make_graph(nodes, "enc", inputs, [y], initializer=[init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def weight():
    return np.random.default_rng(0).standard_normal((10, 48)).astype(np.float32)


@pytest.fixture
def images():
    return torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (5, 3, 4, 4)).astype(np.float32))


def _expected(weight, images, normalize=True):
    z = images.reshape(len(images), -1).numpy() @ weight.T
    return z / np.linalg.norm(z, axis=1, keepdims=True) if normalize else z


def test_onnx_dynamic_batch(tmp_path, weight, images):
    native = af.InputSpec.native()
    enc = af.OnnxEncoder(
        _onnx_linear(tmp_path / "e.onnx", weight, "N"), providers=["CPUExecutionProvider"], spec=native
    )
    assert enc.fixed_batch is None
    np.testing.assert_allclose(enc(images).numpy(), _expected(weight, images), rtol=1e-5, atol=1e-6)
    raw = af.OnnxEncoder(tmp_path / "e.onnx", normalize=False, spec=native)
    np.testing.assert_allclose(raw(images).numpy(), _expected(weight, images, False), rtol=1e-5, atol=1e-5)


def test_onnx_fixed_batch_with_unused_inputs_is_repaired(tmp_path, weight, images):
    path = _onnx_linear(tmp_path / "sface_like.onnx", weight, 1, extra_unused_input=True)
    enc = af.OnnxEncoder(path, transform=lambda x: (x + 1) * 127.5)
    assert enc.fixed_batch == 1
    np.testing.assert_allclose(enc(images).numpy(), _expected(weight, (images + 1) * 127.5), rtol=1e-5, atol=1e-6)


def test_onnx_encoder_in_protect(tmp_path, weight):
    torch.manual_seed(0)
    dec = af.MLPDecoder(10, [16], (3, 4, 4))
    enc = af.OnnxEncoder(_onnx_linear(tmp_path / "e.onnx", weight, "N"), spec=af.InputSpec.native())
    (tmp_path / "e.onnx.json").write_text(af.InputSpec.native().to_json())  # the path form reads the sidecar
    z = np.random.default_rng(2).standard_normal((7, 10)).astype(np.float32)
    a = af.protect(z, dec, enc, eps=0.05, alpha=0.01, steps=2, start="shadow", progress=False)
    b = af.protect(z, dec, str(tmp_path / "e.onnx"), eps=0.05, alpha=0.01, steps=2, start="shadow", progress=False)
    assert np.abs(a - z).max() > 0.01  # the ONNX encoder set the start point E(S(z))
    np.testing.assert_array_equal(a, b)


def test_onnx_bad_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load"):
        af.OnnxEncoder(tmp_path / "bad.onnx", spec=af.InputSpec.native())
    with pytest.raises(FileNotFoundError):
        af.OnnxEncoder(tmp_path / "none.onnx")


def test_torch_encoder_copies_and_normalises(images):
    module = LinearEncoder(48, 10).train()
    enc = af.TorchEncoder(module)
    z = enc(images)
    np.testing.assert_allclose(torch.linalg.vector_norm(z, dim=1).numpy(), 1.0, rtol=1e-6)
    assert module.training and module.proj.weight.requires_grad  # the caller's module is untouched
    assert isinstance(enc, af.Encoder)
    enc64 = enc(images.double())
    assert enc64.dtype == torch.float64
    with pytest.raises(TypeError, match=r"nn\.Module"):
        af.TorchEncoder(lambda x: x)


def test_encoder_from_safetensors_path(tmp_path, images):
    torch.manual_seed(3)
    dec = af.MLPDecoder(10, [], (3, 4, 4))
    z = np.random.default_rng(4).standard_normal((4, 10)).astype(np.float32)
    # any registered model works as an encoder file; a ConvDecoder is not an encoder, so check the error path
    af.save_model(dec, tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="encoder"):
        af.protect(
            z, dec, str(tmp_path / "d.safetensors"), eps=0.1, alpha=0.01, steps=1, start="shadow", progress=False
        )
