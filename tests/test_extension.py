"""The compiled extension advface_fast._C: build, import without a GPU, kernels == torch reference."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs_gpu

import advface_fast as af
from advface_fast.engines import extension as _ext
from advface_fast.engines.ops import clipped_sign_step, clipped_sign_step_ref

ROOT = Path(__file__).resolve().parents[1]
SKIP_EXT = os.environ.get("ADVFACE_SKIP_EXT") == "1"
needs_ext = pytest.mark.skipif(SKIP_EXT, reason="ADVFACE_SKIP_EXT=1: installed without the extension")


@needs_ext
def test_extension_is_built_and_reports_its_build():
    assert _ext.load() is not None, _ext.load_error()
    info = _ext.build_info()
    assert info["openmp"] is True
    nvcc_expected = shutil.which("nvcc") is not None and os.environ.get("ADVFACE_SKIP_CUDA") != "1"
    assert info["cuda"] is nvcc_expected
    lt = os.environ.get("ADVFACE_CUBLASLT_INCLUDE")  # .ci/run sets it when it could fetch the header
    if nvcc_expected and lt and (Path(lt) / "cublasLt.h").is_file():
        assert info["cuda_loop"] is True


@needs_ext
def test_the_loaded_extension_is_not_older_than_its_sources():
    """The extension is optional (a failed build leaves the package working), so a failed rebuild
    after a source change would leave the previous binary in an in-place build and every test
    here would silently run stale code. Found the hard way: fail loudly instead."""
    ext = _ext.load()
    assert ext is not None, _ext.load_error()
    so = Path(ext.__file__)
    if ROOT not in so.parents:
        pytest.skip("the extension is installed outside the source tree")
    sources = [p for p in (ROOT / "csrc").iterdir() if p.suffix in (".cpp", ".cu", ".h", ".cuh")]
    newest = max(sources, key=lambda p: p.stat().st_mtime)
    assert so.stat().st_mtime >= newest.stat().st_mtime, (
        f"{so.name} is older than {newest.name}: the last build of the extension failed; run "
        "`python setup.py build_ext --inplace` to see why"
    )


def _cublaslt_include() -> list[str]:
    for d in (os.environ.get("ADVFACE_CUBLASLT_INCLUDE"), str(ROOT / ".cublas-include")):
        if d and (Path(d) / "cublasLt.h").is_file():
            return ["-DADVFACE_WITH_CUBLASLT", f"-I{d}"]
    return []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
def test_cuda_sources_compile_with_nvcc(tmp_path):
    """Every .cu file; the loop (pgd_loop.cu) in full when cublasLt.h is at hand, else its empty stub."""
    for cu in sorted((ROOT / "csrc").glob("*.cu")):
        cmd = [
            "nvcc",
            "-c",
            str(cu),
            "-o",
            str(tmp_path / (cu.stem + ".o")),
            "-std=c++17",
            f"-I{ROOT / 'csrc'}",
            *_cublaslt_include(),
            "-gencode=arch=compute_90,code=sm_90",
            "-Xcompiler",
            "-fPIC",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / (cu.stem + ".o")).stat().st_size > 0


@needs_ext
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")
def test_cuda_calls_fail_cleanly_without_gpu():
    ext = _ext.load()
    if not ext.build_info()["cuda"]:
        pytest.skip("extension built without its CUDA part")
    with pytest.raises(RuntimeError, match="cudaGetDeviceCount"):
        ext.cuda_device_count()


def _case(n_rows: int, dim: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    eps, alpha = 0.05, 0.02
    c = torch.randn(n_rows, dim, generator=g, dtype=dtype)
    z = c + eps * (2 * torch.rand(n_rows, dim, generator=g, dtype=dtype) - 1)
    grad = torch.randn(n_rows, dim, generator=g, dtype=dtype)
    grad[:, ::5] = 0.0  # exact ties: sign 0
    grad[:, 1::7] = -0.0
    z[:, 2::6] = c[:, 2::6] + eps  # on the boundary, some pushed outward
    z[:, 3::6] = c[:, 3::6] - eps
    return z, grad, c, eps, alpha


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rows", "dim"), [(1, 1), (1, 37), (3, 129), (700, 100)])  # 70,000 > OpenMP threshold
def test_compiled_sign_step_equals_reference_bitwise(dtype, rows, dim):
    z, g, c, eps, alpha = _case(rows, dim, dtype, seed=rows * dim)
    want = clipped_sign_step_ref(z, g, c, eps, alpha)
    out = z.clone()
    clipped_sign_step(out, g, c, eps, alpha, backend="compiled")
    assert torch.equal(out, want)


def test_sign_step_torch_path_and_errors():
    z, g, c, eps, alpha = _case(4, 9, torch.float32, seed=5)
    want = clipped_sign_step_ref(z, g, c, eps, alpha)
    assert torch.equal(clipped_sign_step(z.clone(), g, c, eps, alpha, backend="torch"), want)
    with pytest.raises(ValueError, match="must match z"):
        clipped_sign_step(z, g[:, :3], c, eps, alpha)
    with pytest.raises(ValueError, match="contiguous"):
        clipped_sign_step(z.t(), g.t(), c.t(), eps, alpha)
    if _ext.load() is not None:
        with pytest.raises(af.BackendUnavailableError, match="float32/float64"):
            clipped_sign_step(z.half(), g.half(), c.half(), eps, alpha, backend="compiled")


@needs_ext
@needs_gpu
@pytest.mark.parametrize(("rows", "dim", "offset"), [(1, 1, 0), (3, 37, 0), (3, 37, 1), (513, 129, 0), (64, 512, 3)])
def test_cuda_sign_step_equals_reference_bitwise(rows, dim, offset):
    """offset > 0 makes the pointers not 16-byte aligned: the scalar path instead of float4."""
    if not _ext.build_info()["cuda"]:
        pytest.fail("on a GPU machine the extension must be built with its CUDA part (nvcc present)")
    z, g, c, eps, alpha = (t.cuda() if isinstance(t, torch.Tensor) else t for t in _case(rows, dim, torch.float32, 7))
    want = clipped_sign_step_ref(z, g, c, eps, alpha)
    buf = torch.full((rows * dim + offset,), float("nan"), device="cuda")
    out = buf[offset:].view(rows, dim)
    out.copy_(z)
    gb = torch.empty_like(buf)[offset:].view(rows, dim).copy_(g)
    cb = torch.empty_like(buf)[offset:].view(rows, dim).copy_(c)
    clipped_sign_step(out, gb, cb, eps, alpha, backend="compiled")
    torch.cuda.synchronize()
    assert torch.equal(out, want)


@needs_ext
@needs_gpu
def test_raw_pointer_binding_takes_cupy_arrays_on_cupys_stream():
    """The bindings take addresses and a cudaStream_t, not torch tensors: CuPy memory on a CuPy
    stream works the same (no libtorch ABI involved)."""
    cupy = pytest.importorskip("cupy")
    if not _ext.build_info()["cuda"]:
        pytest.fail("on a GPU machine the extension must be built with its CUDA part (nvcc present)")
    z, g, c, eps, alpha = _case(65, 37, torch.float32, 11)
    want = clipped_sign_step_ref(z, g, c, eps, alpha).numpy()
    zc, gc, cc = (cupy.asarray(t.numpy()) for t in (z, g, c))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        _ext.load().clipped_sign_step_cuda(zc.data.ptr, gc.data.ptr, cc.data.ptr, zc.size, eps, alpha, stream.ptr)
    stream.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(zc), want)
