"""Backend dispatch: auto falls back silently; an explicit backend that cannot run raises why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_pair, unit_rows

import advface_fast as af
from advface_fast.engines import resolve_backend

KW = {"eps": 0.1, "alpha": 0.01, "steps": 1, "progress": False}


def test_auto_on_cpu_is_the_mlp_engine_else_torch_even_under_the_interpreter():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", make_pair()[0], cpu).name == "mlp-eager"
    assert resolve_backend("auto", make_pair(dtype=torch.float64)[0], cpu).name == "torch"
    assert resolve_backend("auto", af.ConvDecoder(24, (3, 8, 8), base_channels=4), cpu).name == "torch"


def test_cuda_backend_on_cpu_raises_with_reason():
    dec, enc = make_pair()
    with pytest.raises(af.BackendUnavailableError, match=r"backend 'cuda' cannot run here: .*GPU"):
        af.protect(unit_rows(3, 24), dec, enc, backend="cuda", device="cpu", **KW)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    dec, enc = make_pair()
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(af.BackendUnavailableError, match=r"backend 'triton' cannot run here: .*GPU"):
        af.protect(unit_rows(3, 24), dec, enc, backend="triton", device="cpu", **KW)


def test_fused_engines_refuse_other_decoders_and_float64():
    conv = af.ConvDecoder(24, (3, 8, 8), base_channels=4)
    with pytest.raises(af.BackendUnavailableError, match="MLPDecoder only"):
        af.protect(unit_rows(3, 24), conv, backend="triton", start="random", **KW)
    dec64 = make_pair(dtype=torch.float64)[0]
    with pytest.raises(af.BackendUnavailableError, match="float32 decoder"):
        af.protect(unit_rows(3, 24), dec64, backend="triton", start="random", **KW)
    for name in ("mlp", "triton"):
        with pytest.raises(af.BackendUnavailableError, match="MLPDecoder only"):
            af.protect(unit_rows(3, 24), conv, backend=name, start="random", **KW)
    with pytest.raises(af.BackendUnavailableError, match="float32 decoder"):
        af.protect(unit_rows(3, 24), dec64, backend="mlp", start="random", **KW)


def test_tf32_needs_cuda():
    dec, enc = make_pair()
    with pytest.raises(af.BackendUnavailableError, match="tf32"):
        af.protect(unit_rows(3, 24), dec, enc, backend="torch", precision="tf32", device="cpu", **KW)
    with pytest.raises(ValueError, match="precision="):
        af.protect(unit_rows(3, 24), dec, enc, precision="fp8", **KW)


def test_explicit_torch_equals_auto():
    dec, enc = make_pair()
    z = unit_rows(9, 24, seed=3)
    np.testing.assert_array_equal(af.protect(z, dec, enc, backend="torch", **KW), af.protect(z, dec, enc, **KW))
    conv = af.ConvDecoder(24, (3, 8, 8), base_channels=4)  # auto falls back to torch for other decoders
    kw = {**KW, "start": "random"}
    np.testing.assert_array_equal(af.protect(z, conv, backend="torch", **kw), af.protect(z, conv, **kw))


def test_available_backends_lists_reasons():
    reasons = af.available_backends(device="cpu")
    assert reasons["torch"] is None and "GPU" in reasons["cuda"]


def test_auto_candidates_follow_the_measurements(monkeypatch):
    from advface_fast.engines import auto_candidates as _auto_candidates

    monkeypatch.delenv("TRITON_INTERPRET")
    cuda = torch.device("cuda")
    assert _auto_candidates(cuda, "bf16") == ("cuda", "triton", "torch")  # H100 run: cuda > triton > torch
    assert _auto_candidates(cuda, "fp32") == _auto_candidates(cuda, "tf32") == ("cuda", "torch")
    assert _auto_candidates(torch.device("cpu"), "bf16") == ("mlp-eager", "torch")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "triton" not in _auto_candidates(cuda, "bf16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_every_backend_says_there_is_no_cuda_device():
    reasons = af.available_backends(device="cuda")
    assert all(r is not None and "no CUDA device" in r for r in reasons.values()), reasons
