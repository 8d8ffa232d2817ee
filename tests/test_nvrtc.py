"""The CUDA backend's NVRTC fallback (advface_fast/nvrtc_kernels.py, advface_fast/nvrtc_loop.py).

On CPU machines (CI installs CuPy and NVRTC, which compile without a GPU):
* every kernel of csrc/cuda_kernels.cuh compiles under NVRTC for sm_80 and sm_90, each name
  expression resolving to an entry of the PTX;
* NVRTC's PTX equals nvcc's for every kernel when both are the same CUDA release: the fallback
  runs the very instructions the compiled build runs (so the GPU tests of the compiled kernels
  speak for it too);
* the Python-driven loop, given the torch twins of the kernels, returns the bytes of the mlp
  engine (the reference's arithmetic) in fp32 and bf16: its buffers, GEMM orientation and step
  order are right; only the kernel launches (raw pointers on torch's stream) need a GPU.
On a GPU (benchmarks/gpu_check.sh): each NVRTC kernel equals the nvcc-built one bit for bit, and
the backend through the fallback passes tests/test_cuda_engine.py (ADVFACE_CUDA_LOOP=nvrtc there).
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from helpers import ODD_D, ODD_HIDDEN, ODD_OUT, needs_gpu, unit_rows

import advface_fast as af
from advface_fast.engines import cuda_loop as cuda_engine
from advface_fast.engines import extension as _ext
from advface_fast.engines import mlp_eager as mlp_engine
from advface_fast.engines import nvrtc_kernels
from advface_fast.engines.nvrtc_loop import PyPgdLoop, TorchKernels
from advface_fast.models.activations import hidden_activation


def _nvrtc_version() -> tuple[int, int] | None:
    try:
        from cupy.cuda import nvrtc

        return tuple(nvrtc.getVersion())
    except Exception:
        return None


needs_nvrtc = pytest.mark.skipif(
    _nvrtc_version() is None, reason="CuPy with an NVRTC library is not installed (pip install .[test] brings both)"
)


def _entries(ptx: str) -> dict[str, str]:
    """``{mangled name: body}`` of every kernel, branch labels renumbered (they count functions)."""
    return {
        m.group(1): re.sub(r"\$L__BB\d+_", "$L__BB_", m.group(0))
        for m in re.finditer(r"\.entry\s+(\S+)\(.*?\n\}", ptx, re.S)
    }


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_every_kernel_compiles_under_nvrtc(arch):
    ptx, lowered = nvrtc_kernels.compile_ptx(arch)
    assert set(lowered) == set(nvrtc_kernels.name_expressions())
    entries = _entries(ptx)
    assert len(set(lowered.values())) == len(lowered) == 28
    assert all(name in entries for name in lowered.values())


@needs_nvrtc
def test_packed_kernels_move_16_bytes_per_access():
    """The pack path is what the issue asks for: every global load and store of a ``<8, ...>``
    kernel is a 16-byte vector access (``.v4`` of 32-bit words), in the PTX itself."""
    ptx, lowered = nvrtc_kernels.compile_ptx("compute_90")
    entries = _entries(ptx)
    packed = [n for n in lowered if f"<{nvrtc_kernels.VEC}" in n]
    assert len(packed) == 13
    for name in packed:
        accesses = re.findall(r"\b((?:ld|st)\.global\S*)", entries[lowered[name]])
        assert accesses and all(".v4." in acc for acc in accesses), (name, sorted(set(accesses)))


def _nvcc_release() -> tuple[int, int] | None:
    out = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


@needs_nvrtc
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
def test_nvrtc_ptx_equals_nvccs(tmp_path):
    if _nvcc_release() != _nvrtc_version():
        pytest.skip(f"nvcc {_nvcc_release()} and NVRTC {_nvrtc_version()} are different releases")
    names = nvrtc_kernels.name_expressions()
    src = tmp_path / "table.cu"  # takes each kernel's address: nvcc instantiates the same templates
    src.write_text(
        '#include "cuda_kernels.cuh"\nvoid* kernel_table[] = {\n' + ",\n".join(f"  (void*)&{n}" for n in names) + "};\n"
    )
    cmd = ["nvcc", "-ptx", "-std=c++17", f"-I{nvrtc_kernels.source_dir()}", "-arch=compute_90", str(src)]
    res = subprocess.run([*cmd, "-o", str(tmp_path / "table.ptx")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ours, lowered = nvrtc_kernels.compile_ptx("compute_90")
    a, b = _entries((tmp_path / "table.ptx").read_text()), _entries(ours)
    for name, mangled in lowered.items():
        assert a[mangled] == b[mangled], name


class _RecordingModule:
    """Stands in for the compiled cupy.RawModule: records each launch instead of running it."""

    def __init__(self) -> None:
        self.launches: list[tuple[str, tuple, tuple, tuple]] = []

    def get_function(self, name: str):
        def launch(grid, block, args):
            self.launches.append((name, grid, block, args))

        return launch


_PTX_TYPE = {np.uint64: ".u64", np.int64: ".u64", np.int32: ".u32", np.float32: ".f32"}


@needs_nvrtc
def test_every_launch_matches_its_kernels_parameters(monkeypatch):
    """What only a GPU would otherwise check: each launch NvrtcKernels makes (the whole loop's, in
    fp32 and bf16, aligned and misaligned, plus the decode) names an instantiation that exists and
    passes arguments whose sizes and kinds are the kernel's parameters in the PTX (a wrong width
    would shift every later argument), over exactly the elements of its tensors."""
    import contextlib

    cupy = pytest.importorskip("cupy")
    rec = _RecordingModule()
    monkeypatch.setattr(nvrtc_kernels, "module", lambda device: rec)
    monkeypatch.setattr(nvrtc_kernels, "cupy_stream", lambda ptr, device: contextlib.nullcontext())
    monkeypatch.setattr(cupy.cuda, "Device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("S", (), {"cuda_stream": 0})())
    kernels = nvrtc_kernels.NvrtcKernels(torch.device("cuda", 0))

    dec = af.MLPDecoder(D, list(HIDDEN), OUT, act="gelu", out_act="sigmoid")
    for precision in ("fp32", "bf16"):
        t = cuda_engine.plan_buffers(dec, torch.device("cpu"), precision, 7)
        for v in t.values():  # random contents: the launches are recorded, the GEMMs still run
            for x in v if isinstance(v, list) else [v]:
                x.copy_(torch.randn(x.shape))
        loop = PyPgdLoop(t, precision, dec.act, dec.out_act, dec.negative_slope, kernels=kernels)
        loop.run(1, 0.05, 0.01)
        loop.decode()
    odd = torch.zeros(8 * 37 + 2)  # a view 4 bytes off alignment: the one-element path
    kernels.act_forward(odd[1:], odd[1:], "relu", 0.0)
    kernels.clipped_sign_step(odd[1:], odd[1:], odd[1:], 0.1, 0.01)

    ptx, lowered = nvrtc_kernels.compile_ptx("compute_90")
    names = {rec_name for rec_name, *_ in rec.launches}
    assert names >= {nvrtc_kernels._ns("to_bf16", "8"), nvrtc_kernels._ns("l1_sign_out_grad", "8", "float", "float")}
    assert any(n.endswith("<1, float>") for n in names) and nvrtc_kernels._ns("clipped_sign_step", "float") in names
    for name, grid, block, args in rec.launches:
        assert name in lowered, name
        m = re.search(r"\.entry\s+" + re.escape(lowered[name]) + r"\((.*?)\)", ptx, re.S)
        params = re.findall(r"\.param\s+(\.\w+)", m.group(1))
        assert [_PTX_TYPE[type(a)] for a in args] == params, name
        assert block == (nvrtc_kernels.THREADS,)
        start, end = (int(a) for a in args if isinstance(a, np.int64))  # the range, in the kernel's unit
        assert 0 <= start < end and grid == (min(-(-(end - start) // nvrtc_kernels.THREADS), 65535),)
    for (prev, _, _, pa), (name, _, _, a) in itertools.pairwise(rec.launches):
        start = int(next(x for x in a if isinstance(x, np.int64)))
        if start > 0:  # a tail: right after the packed launch on the same tensors, where it stopped
            packs_end = [int(x) for x in pa if isinstance(x, np.int64)][1]
            unit = nvrtc_kernels.VEC if "clipped_sign_step" not in prev else 4
            assert prev != name and [x for x in pa if isinstance(x, np.uint64)] == [
                x for x in a if isinstance(x, np.uint64)
            ]
            assert start == packs_end * unit, (prev, name)


def test_the_kernel_sources_are_found():
    folder = nvrtc_kernels.source_dir()
    assert folder is not None and (folder / "cuda_kernels.cuh").is_file()
    assert nvrtc_kernels.compile_options(folder)[-1] == f"-I{folder}"


def test_the_program_text_changes_with_the_headers(tmp_path):
    """CuPy's on-disk cache is keyed by the program text: a changed header must change it."""
    folder = nvrtc_kernels.source_dir()
    for name in nvrtc_kernels.HEADERS:
        shutil.copy(folder / name, tmp_path / name)
    before = nvrtc_kernels.source_code(tmp_path)
    assert before == nvrtc_kernels.source_code(folder)
    with open(tmp_path / "epilogues.h", "a") as f:
        f.write("// an edit\n")
    assert nvrtc_kernels.source_code(tmp_path) != before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without a GPU")
def test_reasons_without_a_gpu(monkeypatch):
    assert nvrtc_kernels.unavailable_reason() is not None
    monkeypatch.setenv("ADVFACE_CUDA_LOOP", "nvrtc")
    reason = cuda_engine.unavailable_reason()
    assert reason.startswith("nvrtc loop: ") and "compiled loop" not in reason
    monkeypatch.setenv("ADVFACE_CUDA_LOOP", "auto")
    assert "compiled loop: " in cuda_engine.unavailable_reason() and "nvrtc loop: " in cuda_engine.unavailable_reason()
    assert cuda_engine.active_impl() is None
    monkeypatch.setenv("ADVFACE_CUDA_LOOP", "cublas")
    with pytest.raises(ValueError, match="ADVFACE_CUDA_LOOP"):
        cuda_engine.unavailable_reason()


def test_stream_handle_speaks_the_cuda_stream_protocol():
    cupy = pytest.importorskip("cupy")
    stream = nvrtc_kernels.cupy_stream(0xBEEF, 0)
    assert stream.ptr == 0xBEEF and isinstance(stream, cupy.cuda.Stream)


D, HIDDEN, OUT = ODD_D, ODD_HIDDEN, ODD_OUT


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("act", "out_act"), [("relu", "tanh"), ("leaky_relu", "sigmoid"), ("gelu", "none")])
@pytest.mark.parametrize("batch", [1, 33])
def test_python_driven_loop_equals_the_mlp_engine(monkeypatch, precision, act, out_act, batch):
    monkeypatch.setenv("ADVFACE_CPU_PACKED", "0")  # plain addmm: the loop's GEMMs
    torch.manual_seed(0)
    dec = af.MLPDecoder(D, list(HIDDEN), OUT, act=act, out_act=out_act)
    rng = np.random.default_rng(1)
    z0 = torch.from_numpy(unit_rows(batch, D, seed=2))
    centre = z0 + torch.from_numpy(rng.uniform(-0.03, 0.03, z0.shape).astype(np.float32))
    target = torch.from_numpy(rng.uniform(-1, 1, (batch, *OUT)).astype(np.float32))
    want = mlp_engine.mlp_pgd(dec, z0, centre, target, 0.05, 0.01, 4, precision)

    t = cuda_engine.plan_buffers(dec, torch.device("cpu"), precision, batch)
    loop = PyPgdLoop(t, precision, act, out_act, dec.negative_slope, kernels=TorchKernels())
    t["z"].copy_(z0)
    t["centre"].copy_(centre)
    t["target"].copy_(target.reshape(batch, -1))
    loop.run(4, 0.05, 0.01)
    assert torch.equal(t["z"], want)
    assert not loop.captured  # graphs are for CUDA devices

    loop.decode()
    assert torch.equal(t["image"].reshape(batch, *OUT), mlp_engine.mlp_decode(dec, t["z"], precision))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_backend_plumbing_through_the_python_loop(monkeypatch, precision):
    """cuda_engine.cuda_pgd / cuda_decode as the GPU runs them with ADVFACE_CUDA_LOOP=nvrtc, on the
    CPU with the kernels' torch twins: inputs copied into the plan, a plan per batch size (and
    reused), z0's dtype out, the decode's shape; each equal to the mlp engine's bytes."""
    monkeypatch.setenv("ADVFACE_CPU_PACKED", "0")
    monkeypatch.setattr(cuda_engine, "active_impl", lambda: "nvrtc")
    monkeypatch.setattr(nvrtc_kernels, "NvrtcKernels", lambda device: TorchKernels())
    torch.manual_seed(3)
    dec = af.MLPDecoder(D, list(HIDDEN), OUT)
    rng = np.random.default_rng(4)
    for batch in (33, 5, 33):
        z0 = torch.from_numpy(unit_rows(batch, D, seed=batch))
        centre = z0 + torch.from_numpy(rng.uniform(-0.03, 0.03, z0.shape).astype(np.float32))
        target = torch.from_numpy(rng.uniform(-1, 1, (batch, *OUT)).astype(np.float32))
        got = cuda_engine.cuda_pgd(dec, z0.double(), centre, target, 0.05, 0.01, 3, precision)
        assert got.dtype == torch.float64
        assert torch.equal(got.float(), mlp_engine.mlp_pgd(dec, z0, centre, target, 0.05, 0.01, 3, precision))
        image = cuda_engine.cuda_decode(dec, z0, precision)
        assert image.shape == (batch, *OUT)
        assert torch.equal(image, mlp_engine.mlp_decode(dec, z0, precision))
    plans = cuda_engine.PLANS.plans(dec)
    assert sorted(key[2] for key in plans) == [5, 33]  # one plan per batch size, reused
    assert all(plan.impl == "nvrtc" and not plan.loop.captured for plan in plans.values())


def test_python_driven_loop_refuses_a_mismatched_precision():
    dec = af.MLPDecoder(D, list(HIDDEN), OUT)
    t = cuda_engine.plan_buffers(dec, torch.device("cpu"), "fp32", 4)
    with pytest.raises(ValueError, match="does not match"):
        PyPgdLoop(t, "bf16", dec.act, dec.out_act, dec.negative_slope, kernels=TorchKernels())


@needs_gpu
@needs_nvrtc
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("misaligned", [False, True])
def test_nvrtc_kernels_equal_the_compiled_ones_on_the_gpu(dtype, misaligned):
    from advface_fast.engines.ops import act_backward_, clipped_sign_step, l1_sign_out_grad, out_activation

    if not _ext.build_info().get("cuda"):
        pytest.skip("the extension has no CUDA part to compare with")
    k = nvrtc_kernels.NvrtcKernels(torch.device("cuda"))
    gen = torch.Generator(device="cuda").manual_seed(0)
    a = (3 * torch.randn(517, 129, device="cuda", generator=gen)).to(dtype)  # 16-byte packs + a 5-element tail
    x = torch.rand(517, 129, device="cuda", generator=gen) * 2 - 1
    if misaligned:  # the one-element-per-thread path throughout
        a, x = a.flatten()[1:], x.flatten()[1:]
    for out_act in ("tanh", "sigmoid", "none"):
        y = torch.empty(a.shape, device="cuda")
        k.out_activation(a, y, out_act)
        assert torch.equal(y, out_activation(a, out_act, backend="compiled"))
        for g_dtype in (torch.float32, torch.bfloat16):
            g = torch.empty(a.shape, device="cuda", dtype=g_dtype)
            k.l1_sign_out_grad(a, x, g, out_act)
            assert torch.equal(g, l1_sign_out_grad(a, x, out_act, g_dtype, backend="compiled"))
    for act in ("relu", "leaky_relu", "gelu"):
        g = torch.randn(a.shape, device="cuda", generator=gen).to(dtype)
        want = act_backward_(g.clone(), a, act, 0.2, backend="compiled")
        k.act_backward(g, a, act, 0.2)
        assert torch.equal(g, want)
    for act in ("relu", "leaky_relu"):  # no compiled binding: against torch, exact for these
        h = torch.empty_like(a)
        k.act_forward(a, h, act, 0.2)
        assert torch.equal(h, hidden_activation(a, act, 0.2))
    zb = torch.empty(x.shape, device="cuda", dtype=torch.bfloat16)
    k.to_bf16(x, zb)
    assert torch.equal(zb, x.to(torch.bfloat16))
    for offset in (0, 1):  # aligned (float4 body + tail) and unaligned (scalar) paths
        z = torch.randn(517 * 37 + 3, device="cuda", generator=gen)[offset:]
        grad = torch.randn(z.shape, device="cuda", generator=gen)
        grad[::7] = 0
        c = z + 0.01 * torch.randn(z.shape, device="cuda", generator=gen)
        want = clipped_sign_step(z.clone(), grad, c, 0.02, 0.015, backend="compiled")
        k.clipped_sign_step(z, grad, c, 0.02, 0.015)
        assert torch.equal(z, want)
