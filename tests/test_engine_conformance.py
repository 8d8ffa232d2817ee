"""Every registered engine that can run here keeps the contract of the registry
(:mod:`advface_fast.engines.registry`): ``pgd`` has ``pgd_ref``'s signature plus ``precision`` and
returns ``z0``'s shape and dtype (the decoder's, float32) inside the eps-ball around ``centre``;
``decode`` is ``S(z)`` in ``z``'s dtype with the loop's forward, so that from ``z`` with its own
shadow image nothing moves (every L1 sign is exactly 0); neither changes its inputs or the
decoder; fp32 follows the reference step for step; an in-place change of the weights is seen.

Which engines run on a CPU: ``torch``, ``mlp-eager``, ``triton-pointer`` and ``triton-tma`` under
Triton's interpreter, and ``cuda-nvrtc``'s Python driver with the kernels' torch twins
(:class:`~advface_fast.engines.nvrtc_loop.TorchKernels`; the NVRTC kernels themselves are checked on
a GPU by tests/test_nvrtc.py). On a GPU machine the same tests run every engine on the GPU
(benchmarks/gpu_check.sh). An engine registered later is picked up here by its name.

Tolerance of the reference comparison: a step's sign flips only where a gradient component is
within GEMM rounding of 0; in fp32 on random decoders that is a tiny fraction of elements, and a
flip moves an element by at most 2 alpha per remaining step.
"""

from __future__ import annotations

import pytest
import torch
from helpers import ODD_D, ODD_OUT, odd_pair, unit_rows

from advface_fast.engines import ENGINES, FAMILIES
from advface_fast.engines.reference import pgd_ref
from advface_fast.engines.registry import ALIASES, backend_names

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
EPS, ALPHA = 0.05, 0.01


def _runs_here(name: str, monkeypatch: pytest.MonkeyPatch, precision: str = "fp32") -> None:
    """Skip unless engine ``name`` can run on DEVICE (on a CPU: cuda-nvrtc's driver with torch kernels)."""
    engine = ENGINES[name]
    dec, _ = odd_pair()
    reason = engine.supports(dec, DEVICE, precision)
    if reason is not None and name == "cuda-nvrtc" and DEVICE.type == "cpu":
        from advface_fast.engines import nvrtc_kernels
        from advface_fast.engines.nvrtc_loop import TorchKernels

        monkeypatch.setattr(nvrtc_kernels, "NvrtcKernels", lambda device: TorchKernels())
        monkeypatch.setenv("ADVFACE_CPU_PACKED", "0")
        return
    if reason is not None:
        pytest.skip(f"{name}: {reason}")


def _inputs(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.from_numpy(unit_rows(batch, ODD_D, seed=seed))
    z0 = z + EPS * (2 * torch.rand(batch, ODD_D, generator=g) - 1)
    target = 2 * torch.rand(batch, *ODD_OUT, generator=g) - 1
    return z.to(DEVICE), z0.to(DEVICE), target.to(DEVICE)


ALL = sorted(ENGINES)


def test_every_name_is_described_and_resolvable():
    for name in backend_names()[1:]:
        entry = ENGINES.get(ALIASES.get(name, name)) or FAMILIES[name]
        assert entry.describe().strip(), name
    for fam in FAMILIES.values():  # a family's variants are registered engines of that family
        for variant in fam.variants(torch.device("cuda")) + fam.variants(torch.device("cpu")):
            assert ENGINES[variant].family == fam.name


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch", [1, 33])
def test_pgd_contract_and_fp32_follows_the_reference(name, batch, monkeypatch):
    _runs_here(name, monkeypatch)
    engine = ENGINES[name]
    dec, _ = odd_pair(seed=batch)
    dec = dec.to(DEVICE).eval().requires_grad_(False)
    state = {k: v.clone() for k, v in dec.state_dict().items()}
    z, z0, target = _inputs(batch, seed=batch)
    copies = [t.clone() for t in (z, z0, target)]
    out = engine.pgd(dec, z0, z, target, EPS, ALPHA, 4, precision="fp32")
    assert out.shape == z0.shape and out.dtype == z0.dtype
    assert all(torch.equal(a, b) for a, b in zip((z, z0, target), copies, strict=True))
    assert all(torch.equal(v, state[k]) for k, v in dec.state_dict().items())
    assert ((out - z).abs() <= EPS + 1e-6).all()  # inside the ball around centre
    want = pgd_ref(dec, z0, z, target, EPS, ALPHA, 4)
    off = (out - want).abs() > 1e-5
    assert off.float().mean() <= 0.02, f"{name}: {off.float().mean():.3%} of elements left the reference's path"
    assert torch.equal(engine.pgd(dec, z0, z, target, EPS, ALPHA, 0, precision="fp32"), z0)  # 0 steps: z0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decode_and_ties_from_the_engines_own_shadow_image(name, precision, monkeypatch):
    _runs_here(name, monkeypatch, precision)
    engine = ENGINES[name]
    dec, _ = odd_pair(act="gelu", out_act="sigmoid", seed=3)
    dec = dec.to(DEVICE).eval().requires_grad_(False)
    z, _, _ = _inputs(9, seed=4)
    image = engine.decode(dec, z, precision)
    assert image.shape == (9, *ODD_OUT) and image.dtype == z.dtype
    tol = 1e-5 if precision == "fp32" else 0.05  # bf16 operands: within bf16's error of the decoder
    assert (image - dec(z)).abs().max() <= tol
    if precision == "fp32":  # bf16 engines may store the target in bf16, a rounding away from S(z)
        still = engine.pgd(dec, z, z, image, EPS, ALPHA, 3, precision=precision)
        assert torch.equal(still, z), f"{name}: moved from its own shadow image"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_in_place_change_of_the_weights_is_seen(name, precision, monkeypatch):
    """The plan caches are keyed by the parameters' versions (bf16 plans hold converted copies; fp32
    ones may alias the parameters)."""
    _runs_here(name, monkeypatch, precision)
    engine = ENGINES[name]
    dec, _ = odd_pair(seed=5)
    dec = dec.to(DEVICE).eval().requires_grad_(False)
    z, _, _ = _inputs(5, seed=6)
    before = engine.decode(dec, z, precision)
    with torch.no_grad():
        dec.layers[-1].bias.add_(0.5)
    after = engine.decode(dec, z, precision)
    tol = 1e-5 if precision == "fp32" else 0.05
    assert (after - dec(z)).abs().max() <= tol and (after - before).abs().max() > 0.1
