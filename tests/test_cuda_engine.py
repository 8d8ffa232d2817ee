"""Backend "cuda" (csrc/pgd_loop.cu driven by advface_fast/engines/cuda_loop.py).

On CPU machines: the loop is built whenever the CUDA part and cublasLt.h are available, the
module imports without libcublasLt or a GPU, and the backend reports why it cannot run. On a GPU
(benchmarks/gpu_check.sh): the loop against the torch reference with the Triton engine's
tolerance argument (tests/test_triton_engine.py): fp32 whole runs within 1e-5 (no step differed;
cuBLASLt only changes the summation order), bf16 tracking fp32 as torch's own bf16 does, graph
replays identical to the eager first call, and exact ties at z itself; each for both loop
implementations (the compiled C++ loop and its NVRTC fallback, ADVFACE_CUDA_LOOP).
"""

from __future__ import annotations

import pytest
import torch
from helpers import ODD_D, ODD_HIDDEN, ODD_OUT, needs_gpu, odd_pair, unit_rows

import advface_fast as af
from advface_fast.engines import cuda_loop as cuda_engine
from advface_fast.engines import extension as _ext
from advface_fast.engines.cuda_loop import unavailable_reason

D, HIDDEN, OUT = ODD_D, ODD_HIDDEN, ODD_OUT


def test_reports_why_it_cannot_run_without_a_gpu():
    reason = af.available_backends(device="cpu")["cuda"]
    assert reason is not None and "GPU" in reason
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    ext = _ext.load()
    if ext is not None and ext.build_info().get("cuda_loop"):
        assert "libcublasLt" in unavailable_reason()  # built, importable, but no cuBLASLt library here
    else:
        assert unavailable_reason() is not None


def test_build_reports_the_loop():
    ext = _ext.load()
    if ext is None:
        pytest.skip("advface_fast._C is not built")
    info = ext.build_info()
    assert "cuda_loop" in info and (info["cuda_loop"] <= info["cuda"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")
def test_the_compiled_loop_binding_takes_the_plan_buffers():
    """The keyword arguments cuda_engine passes match the binding (pybind11 would raise TypeError);
    the loop itself then refuses for want of cuBLASLt/a GPU, with a RuntimeError saying so."""
    ext = _ext.load()
    if ext is None or not ext.build_info().get("cuda_loop"):
        pytest.skip("the extension was built without the CUDA loop")
    dec = af.MLPDecoder(D, list(HIDDEN), OUT)
    with pytest.raises(RuntimeError, match=r"libcublasLt|CUDA|cuda"):
        cuda_engine.build_plan(dec, torch.device("cpu", 0), "bf16", 4, impl="compiled")


_pair = odd_pair


KW = {"eps": 0.05, "alpha": 0.01, "progress": False, "device": "cuda"}


@pytest.fixture(params=["compiled", "nvrtc"])
def impl(request, monkeypatch):
    """Runs a GPU test once per loop implementation."""
    monkeypatch.setenv("ADVFACE_CUDA_LOOP", request.param)
    reason = cuda_engine.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    assert cuda_engine.active_impl() == request.param
    return request.param


@needs_gpu
@pytest.mark.parametrize(("act", "out_act"), [("relu", "tanh"), ("leaky_relu", "sigmoid"), ("gelu", "none")])
@pytest.mark.parametrize("batch", [1, 33])
def test_fp32_loop_matches_reference(impl, act, out_act, batch):
    dec, enc = _pair(act, out_act)
    z = torch.from_numpy(unit_rows(batch, D, seed=2)).cuda()
    a = af.protect(z, dec, enc, start="random", steps=6, backend="torch", **KW)
    b = af.protect(z, dec, enc, start="random", steps=6, backend="cuda", **KW)
    assert (a - b).abs().max().item() < 1e-5


@needs_gpu
def test_graph_replay_equals_eager_and_ties_are_exact(impl):
    dec, enc = _pair()
    z = torch.from_numpy(unit_rows(64, D, seed=3)).cuda()
    # one Protector: its device copy of the decoder keys the plans (af.protect makes a new copy per call)
    prot = af.Protector(dec, enc, start="random", steps=5, backend="cuda", batch_size=32, **KW)
    runs = [prot(z) for _ in range(3)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])
    (frozen,) = prot._frozen.values()
    assert any(plan.loop.captured for plan in cuda_engine.PLANS.plans(frozen).values())  # replays did happen
    for precision in ("fp32", "bf16"):
        out = af.protect(
            z, dec, enc, start="original", steps=3, renorm=False, backend="cuda", precision=precision, **KW
        )
        assert torch.equal(out, z)


@needs_gpu
def test_bf16_tracks_fp32_like_torch_bf16_does(impl):
    dec, enc = _pair(seed=7)
    z = torch.from_numpy(unit_rows(256, D, seed=8)).cuda()
    kw = {"start": "random", "steps": 6, "renorm": False, **KW}
    ref = af.protect(z, dec, enc, backend="torch", **kw)
    ours = af.protect(z, dec, enc, backend="cuda", precision="bf16", **kw)
    tb = af.protect(z, dec, enc, backend="torch", precision="bf16", **kw)
    assert (ours - z).abs().max().item() <= 0.05 + 1e-7
    moved, moved_tb = ((ours - ref).abs() > 1e-3).float().mean().item(), ((tb - ref).abs() > 1e-3).float().mean().item()
    assert moved <= 1.25 * moved_tb + 0.05, (moved, moved_tb)
