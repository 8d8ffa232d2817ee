"""The TMA GEMM kernel (and the pointer kernel) compiles for Hopper (sm_90) with the installed
Triton, on this CPU-only machine: ``python -m advface_fast.kernels.aot_check --quick`` in a process of its own (this one
runs Triton's interpreter, chosen when a kernel is decorated). Every launch of the bf16 loop must
compile, in the persistent and the one-tile-per-program variants, into what the kernel is written
for: operands brought by TMA copies into asynchronous warpgroup MMAs (wgmma)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


@pytest.mark.slow
@pytest.mark.skipif(not PTXAS.exists(), reason="this Triton wheel has no NVIDIA backend (ptxas)")
def test_tma_kernel_compiles_for_hopper_into_tma_copies_and_wgmma(tmp_path):
    from advface_fast.kernels import mlp_gemm_tma

    if mlp_gemm_tma.TensorDescriptor is None:
        pytest.skip("this Triton has no host tensor descriptors")
    report = tmp_path / "aot.json"
    res = subprocess.run(
        [sys.executable, "-m", "advface_fast.kernels.aot_check", "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = json.loads(report.read_text())["rows"]
    tma = [r for r in rows if r["kernel"] == "tma"]
    assert len(tma) == 14 and {r["config"]["PERSISTENT"] for r in tma} == {True, False}
    assert len(rows) == 21  # and the pointer kernel (the one GPUs run without TMA) with one config
    for r in rows:
        assert r["ok"], r
        assert r["wgmma"] >= 1 and r["shared_bytes"] > 0 and r["registers"], r
    for r in tma:
        assert r["tma_loads"] >= 2 and r["tma_stores"] >= 1, r
