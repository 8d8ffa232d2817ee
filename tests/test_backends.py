"""Backend dispatch: auto falls back silently; an explicit backend that cannot run raises why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_pair, unit_rows

import advface_fast as af
from advface_fast.backends import resolve_backend


def test_auto_on_cpu_is_torch():
    dec, _ = make_pair()
    assert resolve_backend("auto", dec, torch.device("cpu")).name == "torch"


@pytest.mark.parametrize("name", ["triton", "cuda"])
def test_explicit_unavailable_backend_raises_with_reason(name):
    dec, enc = make_pair()
    with pytest.raises(af.BackendUnavailableError, match=f"backend '{name}' cannot run here: .*GPU"):
        af.protect(unit_rows(3, 24), dec, enc, eps=0.1, alpha=0.01, steps=1, backend=name, device="cpu", progress=False)


def test_explicit_torch_equals_auto():
    dec, enc = make_pair()
    z = unit_rows(9, 24, seed=3)
    kw = {"eps": 0.1, "alpha": 0.01, "steps": 2, "progress": False}
    np.testing.assert_array_equal(af.protect(z, dec, enc, backend="torch", **kw), af.protect(z, dec, enc, **kw))
