"""Host staging (advface_fast/io/staging.py): batch order, the one-batch lag of writes, the tail
batch, resuming mid-way; on a GPU, pinned staging gives the same rows as a device-resident input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_pair, needs_gpu, unit_rows

import advface_fast as af
from advface_fast.io.arrays import RowSource
from advface_fast.io.staging import HostStaging


@pytest.mark.parametrize("first", [0, 20])
def test_batches_in_order_with_the_write_one_batch_behind(first):
    x = unit_rows(53, 8, seed=1)
    writes: list[tuple[int, np.ndarray]] = []
    staging = HostStaging(
        [RowSource(x, "features", 2)],
        torch.device("cpu"),
        [torch.float32],
        10,
        lambda a, r: writes.append((a, r.numpy().copy())),
    )
    seen = []
    for a, b, (z,) in staging.batches(first):
        seen.append((a, b))
        assert torch.equal(z, torch.from_numpy(x[a:b]))
        written_before = len(writes)
        staging.emit(a, z * 2)
        assert len(writes) == max(0, len(seen) - 1) and len(writes) >= written_before  # lags one batch
    staging.flush()
    assert seen == [(a, min(a + 10, 53)) for a in range(first, 53, 10)]
    assert [a for a, _ in writes] == [a for a, _ in seen]
    np.testing.assert_array_equal(np.concatenate([r for _, r in writes]), 2 * x[first:])


@needs_gpu
def test_pinned_staging_on_the_gpu_equals_a_device_input(tmp_path):
    dec, enc = make_pair()
    x = unit_rows(1000, 24, seed=2)
    kw = {"device": "cuda", "batch_size": 128, "progress": False, "backend": "torch"}
    on_device = af.protect(torch.from_numpy(x).cuda(), dec, enc, **kw).cpu().numpy()
    np.testing.assert_array_equal(af.protect(x, dec, enc, **kw), on_device)
    np.save(tmp_path / "g.npy", x)
    np.testing.assert_array_equal(af.protect(tmp_path / "g.npy", dec, enc, out=tmp_path / "o.npy", **kw), on_device)
