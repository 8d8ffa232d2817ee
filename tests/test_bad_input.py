"""Bad input gets a clear error naming the problem, and changes nothing (no file, input intact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_pair, unit_rows

import advface_fast as af

KW = {"eps": 0.05, "alpha": 0.01, "steps": 2, "progress": False}


@pytest.fixture
def env(tmp_path):
    dec, enc = make_pair(seed=41)
    z = unit_rows(20, 24, seed=42)
    return dec, enc, z, tmp_path


def _assert_nothing_written(tmp_path, before):
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _bad(env, exc, match, features=None, **kw):
    dec, enc, z, tmp = env
    feats = z if features is None else features
    snapshot = feats.copy() if isinstance(feats, np.ndarray) else None
    before = sorted(p.name for p in tmp.iterdir())
    args = {**KW, "out": tmp / "out.npy", **kw}
    with pytest.raises(exc, match=match):
        af.protect(feats, args.pop("decoder", dec), args.pop("encoder", enc), **args)
    _assert_nothing_written(tmp, before)
    if snapshot is not None:
        np.testing.assert_array_equal(feats, snapshot)


def test_dimension_mismatch(env):
    _bad(env, ValueError, "dimension 23 but the decoder expects 24", features=unit_rows(5, 23))


def test_dimension_mismatch_for_a_module_without_in_dim(env):
    dec = torch.nn.Sequential(torch.nn.Linear(24, 30), torch.nn.Unflatten(1, (3, 5, 2)))
    _bad(
        env,
        ValueError,
        "dimension 23 but the decoder expects 24",
        features=unit_rows(5, 23),
        decoder=dec,
        start="random",
    )


def test_decoder_that_rejects_features(env):
    class Picky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, z):
            raise RuntimeError("shape mismatch inside")

    _bad(env, ValueError, "cannot take features of dimension 24", decoder=Picky(), start="random")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_inf(env, value):
    z = env[2].copy()
    z[13, 5] = value
    _bad(env, ValueError, "NaN or Inf, first at row 13", features=z)


def test_finite_check_is_exact_when_a_sum_would_overflow():
    """check_finite clears a chunk by its sum; a sum that overflows (finite float64 values near
    the maximum) must fall through to the exact test, not reject the gallery, and an Inf and a NaN
    in one chunk (sum NaN) must still be found at the right row."""
    from advface_fast.io.arrays import RowSource

    big = np.full((6, 4), np.finfo(np.float64).max / 2, dtype=np.float64)
    RowSource(big, "features", ndim=2).check_finite()  # the sum is inf, every value is finite
    both = np.zeros((6, 4), dtype=np.float32)
    both[2, 1], both[4, 0] = np.inf, np.nan
    with pytest.raises(ValueError, match="first at row 2"):
        RowSource(both, "features", ndim=2).check_finite()


def test_nan_in_npy_file_names_the_file(env):
    z = env[2].copy()
    z[7, 0] = np.nan
    path = env[3] / "g.npy"
    np.save(path, z)
    _bad(env, ValueError, r"g\.npy\) holds NaN or Inf, first at row 7", features=path)


def test_empty(env):
    _bad(env, ValueError, "empty", features=np.zeros((0, 24), np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_non_float_dtypes(env, dtype):
    _bad(env, TypeError, "float", features=np.ones((4, 24), dtype=dtype))


def test_torch_int_tensor(env):
    _bad(env, TypeError, "floating-point", features=torch.ones(4, 24, dtype=torch.int64))


def test_wrong_ndim_and_type(env):
    _bad(env, ValueError, "2 dimensions", features=np.ones((4, 24, 1), np.float32))
    _bad(env, TypeError, "numpy array, a torch tensor", features=[[0.1] * 24])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"eps": 0.0}, "eps must be"),
        ({"eps": -0.1}, "eps must be"),
        ({"eps": float("nan")}, "eps must be"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"alpha": -1.0}, "alpha must be"),
        ({"steps": -1}, "steps must be"),
        ({"steps": 2.5}, "steps must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"start": "zero"}, "start="),
        ({"backend": "fastest"}, "backend="),
    ],
)
def test_bad_parameters(env, kw, match):
    _bad(env, ValueError, match, **kw)


def test_shadow_start_without_encoder(env):
    _bad(env, ValueError, "needs an encoder", encoder=None, start="shadow")


def test_encoder_with_wrong_output_dim(env):
    from helpers import LinearEncoder

    _bad(env, ValueError, "encoder returns features of shape", encoder=LinearEncoder(90, 10), start="shadow")


def test_images_mismatch(env):
    z = env[2]
    _bad(env, ValueError, "images has 19 rows", images=np.zeros((19, 3, 6, 5), np.float32) + 0.5)
    _bad(env, ValueError, "decoder outputs", images=np.zeros((20, 3, 5, 6), np.float32) + 0.5)
    bad = np.full((20, 3, 6, 5), 0.5, np.float32)
    bad[3, 0, 0, 0] = np.nan
    _bad(env, ValueError, "images holds NaN", images=bad, features=z)


def test_out_equal_to_input(env):
    path = env[3] / "g.npy"
    np.save(path, env[2])
    data = path.read_bytes()
    with pytest.raises(ValueError, match="same file as the features input"):
        af.protect(path, env[0], env[1], out=path, overwrite=True, **KW)
    assert path.read_bytes() == data


def test_out_not_npy_or_missing_folder(env):
    _bad(env, ValueError, "must be a .npy path", out=env[3] / "out.bin")
    _bad(env, FileNotFoundError, "folder of out does not exist", out=env[3] / "nope" / "out.npy")


def test_corrupt_and_truncated_npy(env):
    tmp = env[3]
    path = tmp / "g.npy"
    np.save(path, env[2])
    full = path.read_bytes()
    path.write_bytes(full[:-10])
    _bad(env, af.GalleryFormatError, "truncated", features=path)
    path.write_bytes(full + b"\0" * 8)
    _bad(env, af.GalleryFormatError, "longer than its header", features=path)
    path.write_bytes(b"not a numpy file at all")
    _bad(env, af.GalleryFormatError, "not a valid .npy", features=path)
    path.write_bytes(full[:20])
    _bad(env, af.GalleryFormatError, "not a valid .npy", features=path)
    np.save(path, np.array([{"a": 1}], dtype=object))
    _bad(env, af.GalleryFormatError, "Python objects", features=path)
    np.save(path, env[2][None])
    _bad(env, af.GalleryFormatError, "expected 2 dimensions", features=path)
    _bad(env, FileNotFoundError, "not found", features=tmp / "missing.npy")


def test_decoder_must_be_a_module(env):
    with pytest.raises(TypeError, match=r"nn\.Module"):
        af.protect(env[2], lambda z: z, **KW)


def test_device_names_and_cut_npy3_headers_and_nan_slopes_are_named(tmp_path):
    """#38 lows: device='cuda' without a GPU and device='tpu' are refused by name; an .npy 3.0
    header cut inside its length field is a format error; a NaN negative_slope fails at load."""
    import torch

    from advface_fast.errors import GalleryFormatError

    dec = af.load_default().shadow
    z = np.ones((1, 128), np.float32)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            af.Protector(dec, device="cuda", progress=False)
    with pytest.raises(ValueError, match="runs on 'cpu' or 'cuda"):
        af.Protector(dec, device="tpu", progress=False)
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x03\x00\x10")
    with pytest.raises(GalleryFormatError, match=r"not a valid \.npy"):
        af.protect(tmp_path / "cut.npy", dec, progress=False)
    with pytest.raises(ValueError, match="negative_slope must be a finite"):
        af.MLPDecoder(128, [16], (3, 4, 4), negative_slope=float("nan"))
    assert af.protect(z, dec, progress=False, device="cpu").shape == (1, 128)


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"attackers": ["../../outside"]}, "'../../outside' is not one of"),
        ({"identity_attacker": "nobody"}, "is not one of"),
        ({"judge": "human"}, "'human' is not one of dlib, none"),
        ({"detector": "mtcnn"}, "is not one of yunet, none"),
        ({"size": "64"}, "expected an integer, got '64'"),
        ({"shadow_epochs": 1e12}, "expected an integer"),
        ({"attacker_epochs": -5}, "expected an integer in 0.."),
        ({"privacy_per_fold": True}, "expected an integer"),
        ({"eps": float("nan")}, "finite non-negative number"),
        ({"shadow_hidden": [512, "x"]}, "in the list: expected an integer"),
        ({"attacker_epochs_by_name": {"conv": -1}}, "in the object"),
    ],
)
def test_evaluation_configs_are_checked_before_any_data_is_read(tmp_path, settings, match):
    """#38 lows: a config's values are checked by their declared type and the names a harness
    allows, before anything is read, trained or written (an attacker name with ../ created a folder
    outside the cache)."""
    import json

    from advface_fast.eval.faces_config import FacesEvalConfig

    path = tmp_path / "config.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=match):
        FacesEvalConfig.from_json(path)
    assert list(tmp_path.iterdir()) == [path]


def test_threat_and_synthetic_configs_refuse_negative_counts(tmp_path):
    import json

    from advface_fast.eval.evaluate import EvalConfig
    from advface_fast.eval.threat.suite import ThreatConfig

    for cls in (ThreatConfig, EvalConfig):
        (tmp_path / "c.json").write_text(json.dumps({"users": -5}))
        with pytest.raises(ValueError, match="setting 'users': expected an integer in 0"):
            cls.from_json(tmp_path / "c.json")
