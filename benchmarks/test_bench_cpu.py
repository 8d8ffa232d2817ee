"""CPU benchmark: this package against the AdvFace loop as users write it by hand.

    .venv/bin/python -m pytest benchmarks/test_bench_cpu.py --benchmark-columns=min,median,rounds

Every implementation runs the same work: decode the shadow image, start from the same random
point (advface_fast's counter-based noise), 10 sign steps on the L1 loss, projection to the
eps-ball (the package additionally re-normalises; the comparison runs it with renorm=False). Sizes:
small 128-256-3x16x16, medium 512-1024-2048-3x32x32; batches 1, 64, 1024; threads pinned
(ADVFACE_BENCH_THREADS, default 2). The ratio table at the end is from this one run.

Where torchattacks and advertorch are installed (``pip install --no-deps -r
benchmarks/requirements-real-packages.txt``), the same loop also runs through them
(``baselines/real_packages.py``: why each needs what it needs).

The package runs as ``auto`` (on the CPU: the written-out MLP loop, ``backend="mlp"``) and as the
autograd reference (``backend="torch"``), each in fp32 and bf16 (the reference's bf16 is
``torch.autocast``).
"""

from __future__ import annotations

import time

import pytest
import torch
from baselines import real_packages
from baselines.advertorch_style import advertorch_style
from baselines.torchattacks_style import torchattacks_style
from conftest import RESULTS

import advface_fast as af
from advface_fast.engines.seeding import row_uniform

SIZES = {"small": (128, [256], (3, 16, 16)), "medium": (512, [1024, 2048], (3, 32, 32))}
EPS, ALPHA, STEPS = 0.08, 0.016, 10
# the package's runs and the reference they are checked against: the baselines' loop (no renorm)
PROTECT_KW = {
    "eps": EPS,
    "alpha": ALPHA,
    "steps": STEPS,
    "start": "random",
    "renorm": False,
    "device": "cpu",
    "progress": False,
}


@pytest.fixture(scope="module", params=list(SIZES))
def setup(request):
    dim, hidden, shape = SIZES[request.param]
    torch.manual_seed(0)
    return request.param, af.MLPDecoder(dim, hidden, shape), dim


def _impl(name, decoder, z, noise):
    if name == "torchattacks_style":
        return lambda: torchattacks_style(decoder, z, EPS, ALPHA, STEPS, noise)
    if name == "advertorch_style":
        return lambda: advertorch_style(decoder, z, EPS, ALPHA, STEPS, noise)
    if name in REAL_PACKAGES:
        attack = REAL_PACKAGES[name](decoder, EPS, ALPHA, STEPS)
        return lambda: attack(z, noise)
    precision = "bf16" if name.endswith("bf16") else "fp32"
    backend = "torch" if name.startswith("advface_torch") else "auto"
    prot = af.Protector(decoder, precision=precision, backend=backend, batch_size=len(z), **PROTECT_KW)
    return lambda: prot(z)


# the real libraries, where installed (benchmarks/requirements-real-packages.txt; see baselines/real_packages.py)
REAL_PACKAGES = {
    f"{pkg}_pkg": make
    for pkg, make in (("torchattacks", real_packages.torchattacks_pgd), ("advertorch", real_packages.advertorch_pgd))
    if real_packages.unavailable_reason(pkg) is None
}
IMPLS = [
    "advface_auto",
    "advface_bf16",
    "advface_torch",
    "advface_torch_bf16",
    "torchattacks_style",
    "advertorch_style",
    *REAL_PACKAGES,
]
BATCHES = [1, 64, 1024]


def _inputs(batch: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.nn.functional.normalize(torch.randn(batch, dim, generator=torch.Generator().manual_seed(batch)), dim=1)
    return z, row_uniform(0, torch.arange(batch), dim).float()


def _rounds(size: str, batch: int) -> int:
    return 4 if size == "medium" and batch == 1024 else 9


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("impl", IMPLS)
def test_protect_cpu(benchmark, setup, batch, impl):
    """Each implementation timed on its own (pytest-benchmark's statistics)."""
    size, decoder, dim = setup
    z, noise = _inputs(batch, dim)
    fn = _impl(impl, decoder, z, noise)
    benchmark.group = f"{size} batch {batch}"
    out = benchmark.pedantic(fn, rounds=_rounds(size, batch), warmup_rounds=1)
    # same loop, same start: fp32 implementations agree up to GEMM rounding near zero gradients
    if impl in ("torchattacks_style", "advertorch_style", "advface_auto", *REAL_PACKAGES):
        ref = af.protect(z, decoder, backend="torch", **PROTECT_KW)
        assert ((out - ref).abs() > 1e-5).float().mean() < 0.01


@pytest.mark.parametrize("batch", BATCHES)
def test_paired_ratios(setup, batch):
    """The ratio table: every implementation once per round, round after round (interleaved, so a
    slow minute of this shared machine hits all of them alike), fastest round of each."""
    size, decoder, dim = setup
    z, noise = _inputs(batch, dim)
    fns = {impl: _impl(impl, decoder, z, noise) for impl in IMPLS}
    for fn in fns.values():
        fn()  # warm-up (weight packing, oneDNN primitive caches)
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(_rounds(size, batch)):
        for impl, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[impl].append(time.perf_counter() - t)
    RESULTS[(size, batch)] = {impl: min(v) for impl, v in times.items()}  # see conftest: noise only adds
