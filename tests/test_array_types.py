"""Every input array type that can run here; the result has the input's type, dtype and device."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from helpers import assert_same_protection, make_pair, needs_gpu, unit_rows

import advface_fast as af

KW = {"eps": 0.05, "alpha": 0.01, "steps": 3, "progress": False}


@pytest.fixture(scope="module")
def reference():
    dec, enc = make_pair()
    z = unit_rows(33, 24, seed=21)
    return dec, enc, z, af.protect(z, dec, enc, **KW)


def test_numpy_float32(reference):
    _, _, z, ref = reference
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float32 and ref.shape == z.shape


def test_torch_cpu(reference):
    dec, enc, z, ref = reference
    out = af.protect(torch.from_numpy(z), dec, enc, **KW)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
    np.testing.assert_array_equal(out.numpy(), ref)


def test_torch_requires_grad_and_noncontiguous(reference):
    dec, enc, z, ref = reference
    wide = torch.zeros(33, 48)
    wide[:, ::2] = torch.from_numpy(z)
    view = wide[:, ::2].requires_grad_(False)
    assert not view.is_contiguous()
    assert_same_protection(af.protect(view, dec, enc, **KW).numpy(), ref)
    np.testing.assert_array_equal(
        af.protect(torch.from_numpy(z).requires_grad_(True), dec, enc, **KW).detach().numpy(), ref
    )


def test_numpy_noncontiguous_and_big_endian(reference):
    dec, enc, z, ref = reference
    fortran = np.asfortranarray(z)
    np.testing.assert_array_equal(af.protect(fortran, dec, enc, **KW), ref)
    big = z.astype(">f4")
    np.testing.assert_array_equal(af.protect(big, dec, enc, **KW), ref)


def test_npy_path_is_streamed_into_numpy(reference, tmp_path):
    dec, enc, z, ref = reference
    np.save(tmp_path / "g.npy", z)
    out = af.protect(tmp_path / "g.npy", dec, enc, batch_size=8, **KW)
    assert isinstance(out, np.ndarray)
    assert_same_protection(out, ref)
    out2 = af.protect(str(tmp_path / "g.npy"), dec, enc, **KW)
    np.testing.assert_array_equal(out2, ref)


@pytest.mark.parametrize("np_dtype", [np.float16, np.float64])
def test_other_float_dtypes_round_trip(reference, np_dtype):
    dec, enc, z, _ = reference
    zin = z.astype(np_dtype)
    out = af.protect(zin, dec, enc, **KW)
    assert out.dtype == np_dtype
    # Computed in the decoder's float32 from the same (rounded) input: the results differ only by
    # the final rounding to the dtype, half an ulp of values below 1.
    want = af.protect(zin.astype(np.float32), dec, enc, **KW)
    np.testing.assert_allclose(out.astype(np.float32), want, rtol=0, atol=float(np.finfo(np_dtype).eps))


def test_torch_bfloat16(reference):
    dec, enc, z, ref = reference
    out = af.protect(torch.from_numpy(z).bfloat16(), dec, enc, **KW)
    assert out.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(out.float(), torch.from_numpy(ref)).min() > 0.99


def test_float64_decoder_computes_in_float64():
    dec, enc = make_pair(dtype=torch.float64)
    z = unit_rows(5, 24, seed=22, dtype=np.float64)
    out = af.protect(z, dec, enc, **KW)
    assert out.dtype == np.float64


@needs_gpu
def test_torch_cuda_stays_on_device(reference):
    dec, enc, z, ref = reference
    out = af.protect(torch.from_numpy(z).cuda(), dec, enc, backend="torch", **KW)
    assert out.device.type == "cuda"
    # GPU GEMMs round differently from the CPU's (~1e-7 here): the sign steps agree except where a
    # gradient element is within rounding of 0, which moves that element by a step (>= 1e-4 here).
    assert (np.abs(out.cpu().numpy() - ref) > 1e-4).mean() < 0.02


@partial(needs_gpu, reason="needs a CUDA GPU for cupy arrays (run by benchmarks/gpu_check.sh)")
def test_cupy_round_trip(reference):
    cupy = pytest.importorskip("cupy")
    dec, enc, z, ref = reference
    out = af.protect(cupy.asarray(z), dec, enc, backend="torch", **KW)
    assert isinstance(out, cupy.ndarray) and out.dtype == np.float32
    assert (np.abs(cupy.asnumpy(out) - ref) > 1e-4).mean() < 0.02
