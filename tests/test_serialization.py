"""save_model / load_model: one safetensors file, weights + config; foreign files refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import advface_fast as af
from advface_fast.models.serialization import read_model_header


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("out_act", ["tanh", "sigmoid", "none"])
def test_mlp_round_trip(tmp_path, act, out_act):
    torch.manual_seed(0)
    m = af.MLPDecoder(13, [17, 9], (2, 3, 4), act=act, out_act=out_act, negative_slope=0.1)
    af.save_model(m, tmp_path / "m.safetensors")
    back = af.load_model(tmp_path / "m.safetensors")
    assert isinstance(back, af.MLPDecoder) and not back.training
    assert back.config() == m.config()
    z = torch.randn(5, 13)
    assert torch.equal(back(z), m(z))
    assert back(z).shape == (5, 2, 3, 4)


@pytest.mark.parametrize("size", [(3, 32, 32), (1, 16, 24), (3, 112, 112)])
def test_conv_round_trip(tmp_path, size):
    torch.manual_seed(1)
    m = af.ConvDecoder(20, size, base_channels=4)
    with torch.no_grad():  # give BatchNorm non-trivial running stats, which must be saved too
        m.train()(torch.randn(8, 20))
    m.eval()
    af.save_model(m, tmp_path / "c.safetensors")
    back = af.load_model(tmp_path / "c.safetensors")
    z = torch.randn(3, 20)
    assert torch.equal(back(z), m(z)) and back(z).shape == (3, *size)
    assert read_model_header(tmp_path / "c.safetensors") == ("ConvDecoder", m.config())


def test_conv_decoder_rejects_odd_sizes():
    with pytest.raises(ValueError, match="divisible by 2"):
        af.ConvDecoder(8, (3, 37, 37))


def test_decoder_argument_validation():
    with pytest.raises(ValueError, match="act="):
        af.MLPDecoder(4, [4], (1, 2, 2), act="swish")
    with pytest.raises(ValueError, match="out_act="):
        af.MLPDecoder(4, [4], (1, 2, 2), out_act="softmax")
    with pytest.raises(ValueError, match="out_shape"):
        af.MLPDecoder(4, [4], (4, 4))


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    with pytest.raises(af.ModelFormatError, match="not an advface_fast model"):
        af.load_model(plain)
    pkl = tmp_path / "evil.safetensors"
    pkl.write_bytes(pickle.dumps({"w": np.ones(2)}))
    with pytest.raises(af.ModelFormatError, match="not a readable safetensors"):
        af.load_model(pkl)
    with pytest.raises(FileNotFoundError):
        af.load_model(tmp_path / "missing.safetensors")


def test_tampered_config_or_weights_are_refused(tmp_path):
    m = af.MLPDecoder(6, [5], (1, 2, 2))
    path = tmp_path / "m.safetensors"
    af.save_model(m, path)
    state = {k: v.contiguous() for k, v in m.state_dict().items()}
    meta = {
        "advface_fast.format": "1",
        "advface_fast.class": "MLPDecoder",
        "advface_fast.config": '{"in_dim": 7, "hidden": [5], "out_shape": [1, 2, 2]}',
    }
    save_file(state, str(path), metadata=meta)
    with pytest.raises(af.ModelFormatError, match="weights do not match"):
        af.load_model(path)
    save_file(state, str(path), metadata={**meta, "advface_fast.class": "os.system"})
    with pytest.raises(af.ModelFormatError, match="not a registered model class"):
        af.load_model(path)
    save_file(state, str(path), metadata={**meta, "advface_fast.config": "{not json"})
    with pytest.raises(af.ModelFormatError, match="not valid JSON"):
        af.load_model(path)
    save_file(state, str(path), metadata={**meta, "advface_fast.config": '{"bogus": 1}'})
    with pytest.raises(af.ModelFormatError, match="cannot rebuild"):
        af.load_model(path)


def test_unregistered_class_cannot_be_saved(tmp_path):
    with pytest.raises(TypeError, match="not a registered model class"):
        af.save_model(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
