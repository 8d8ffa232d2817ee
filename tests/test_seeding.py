"""The counter-based noise of the random start: the compiled CPU kernel and the torch (GPU)
implementation == the numpy reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import needs_gpu

from advface_fast.engines import extension as _ext
from advface_fast.engines import seeding
from advface_fast.engines.seeding import _row_uniform_torch, row_uniform, row_uniform_ref


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 + 5, -7])
def test_torch_matches_numpy_reference_bitwise(seed):
    rows = np.array([0, 1, 2, 17, 10**6, 2**40 + 3, 2**62 - 1], dtype=np.int64)
    got = _row_uniform_torch(seed, torch.from_numpy(rows), 37).numpy()  # the GPU code path, run on the CPU
    want = row_uniform_ref(seed, rows, 37)
    np.testing.assert_array_equal(row_uniform(seed, torch.from_numpy(rows), 37).numpy(), want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(_ext.load() is None, reason="advface_fast._C is not built")
@pytest.mark.parametrize("seed", [0, 12345, 2**64 - 1, -7])
@pytest.mark.parametrize("dim", [1, 37, 512])
def test_compiled_kernel_matches_numpy_reference_bitwise(seed, dim):
    """Small and large enough for the kernel's threads (300 x 512 values); float32 out is the
    reference's float64 rounded to nearest even, as torch's .to(float32) rounds it."""
    rows = np.concatenate([np.array([0, 2**62 - 1, 2**40 + 3], dtype=np.int64), np.arange(297, dtype=np.int64) * 7919])
    want = row_uniform_ref(seed, rows, dim)
    got = row_uniform(seed, torch.from_numpy(rows), dim)  # the compiled kernel on the CPU
    np.testing.assert_array_equal(got.numpy(), want)
    got32 = row_uniform(seed, torch.from_numpy(rows), dim, dtype=torch.float32)
    assert got32.dtype == torch.float32
    np.testing.assert_array_equal(got32.numpy(), want.astype(np.float32))


def test_without_the_extension_numpy_gives_the_same(monkeypatch):
    rows = torch.tensor([3, 1, 4, 1, 5])
    compiled = row_uniform(11, rows, 9, dtype=torch.float32)
    monkeypatch.setattr(seeding._ext, "load", lambda: None)
    np.testing.assert_array_equal(row_uniform(11, rows, 9, dtype=torch.float32).numpy(), compiled.numpy())


def test_range_distribution_and_independence():
    u = row_uniform(3, torch.arange(2000), 64).numpy()
    assert u.min() >= -1.0 and u.max() < 1.0
    assert abs(u.mean()) < 0.01 and abs(u.std() - 1 / np.sqrt(3)) < 0.01
    # a row's noise depends only on (seed, row id, column)
    part = row_uniform(3, torch.tensor([1500, 7]), 64).numpy()
    np.testing.assert_array_equal(part, u[[1500, 7]])
    assert not np.array_equal(row_uniform(4, torch.arange(5), 64).numpy(), u[:5])
    # neighbouring rows and columns are uncorrelated
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.02


@needs_gpu
def test_cuda_matches_reference():
    rows = torch.tensor([0, 5, 2**41 + 1, 2**62 - 3])
    np.testing.assert_array_equal(row_uniform(9, rows.cuda(), 129).cpu().numpy(), row_uniform_ref(9, rows.numpy(), 129))
