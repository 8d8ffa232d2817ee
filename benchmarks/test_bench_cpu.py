"""CPU benchmark: this package against the AdvFace loop as users write it by hand.

    .venv/bin/python -m pytest benchmarks/test_bench_cpu.py --benchmark-columns=median,rounds

Every implementation runs the same work: decode the shadow image, start from the same random
point (advface_fast's counter-based noise), 10 sign steps on the L1 loss, projection to the
eps-ball (the package additionally re-normalises; the comparison runs it with renorm=False). Sizes:
small 128-256-3x16x16, medium 512-1024-2048-3x32x32; batches 1, 64, 1024; threads pinned
(ADVFACE_BENCH_THREADS, default 2). The ratio table at the end is from this one run.
"""

from __future__ import annotations

import pytest
import torch
from baselines.advertorch_style import advertorch_style
from baselines.torchattacks_style import torchattacks_style
from conftest import RESULTS

import advface_fast as af
from advface_fast.seeding import row_uniform

SIZES = {"small": (128, [256], (3, 16, 16)), "medium": (512, [1024, 2048], (3, 32, 32))}
EPS, ALPHA, STEPS = 0.08, 0.016, 10


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
    precision = "bf16" if name == "advface_bf16" else "fp32"
    prot = af.Protector(
        decoder,
        eps=EPS,
        alpha=ALPHA,
        steps=STEPS,
        start="random",
        renorm=False,
        device="cpu",
        precision=precision,
        progress=False,
        batch_size=len(z),
    )
    return lambda: prot(z)


@pytest.mark.parametrize("batch", [1, 64, 1024])
@pytest.mark.parametrize("impl", ["advface_auto", "advface_bf16", "torchattacks_style", "advertorch_style"])
def test_protect_cpu(benchmark, setup, batch, impl):
    size, decoder, dim = setup
    z = torch.nn.functional.normalize(torch.randn(batch, dim, generator=torch.Generator().manual_seed(batch)), dim=1)
    noise = row_uniform(0, torch.arange(batch), dim).float()
    fn = _impl(impl, decoder, z, noise)
    benchmark.group = f"{size} batch {batch}"
    rounds = 3 if size == "medium" and batch == 1024 else 5
    out = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1)
    RESULTS.setdefault((size, batch), {})[impl] = benchmark.stats.stats.median
    # same loop, same start: fp32 implementations agree up to GEMM rounding near zero gradients
    if impl in ("torchattacks_style", "advertorch_style"):
        ref = af.protect(
            z, decoder, eps=EPS, alpha=ALPHA, steps=STEPS, start="random", renorm=False, device="cpu", progress=False
        )
        assert ((out - ref).abs() > 1e-5).float().mean() < 0.01
