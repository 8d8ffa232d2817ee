"""Helpers shared by the tests: small random models and features (fresh random data, never zeros)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import advface_fast as af
from advface_fast.models.activations import HIDDEN_ACTS, OUT_ACTS, hidden_activation, output_activation


@af.register_model
class LinearEncoder(nn.Module):
    """E(x) = A flatten(x): simple enough for analytic checks, a real nn.Module for the engine.
    Registered, so it also shows that user classes can be saved and loaded."""

    def __init__(self, in_features: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.in_features, self.dim, self.seed = in_features, dim, seed
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Linear(in_features, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, in_features, generator=g) / in_features**0.5)

    def config(self) -> dict:
        return {"in_features": self.in_features, "dim": self.dim, "seed": self.seed}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))


def make_pair(
    dim: int = 24,
    hidden: tuple[int, ...] = (40,),
    out_shape: tuple[int, int, int] = (3, 6, 5),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    out_act: str = "tanh",
) -> tuple[af.MLPDecoder, LinearEncoder]:
    """A small random (decoder, encoder) pair with the given feature dimension."""
    torch.manual_seed(seed)
    dec = af.MLPDecoder(dim, list(hidden), out_shape, out_act=out_act).to(dtype)
    enc = LinearEncoder(int(np.prod(out_shape)), dim, seed + 1).to(dtype)
    return dec, enc


# The engine tests' sizes: none a multiple of a block, a warp or a vector width
ODD_D, ODD_HIDDEN, ODD_OUT = 37, (129, 64), (3, 7, 5)


def odd_pair(
    act: str = "leaky_relu", out_act: str = "tanh", hidden: tuple[int, ...] = ODD_HIDDEN, seed: int = 0
) -> tuple[af.MLPDecoder, LinearEncoder]:
    """An MLPDecoder of the odd sizes (``torch.manual_seed(seed)`` first) and a linear encoder back."""
    torch.manual_seed(seed)
    dec = af.MLPDecoder(ODD_D, list(hidden), ODD_OUT, act=act, out_act=out_act)
    return dec, LinearEncoder(int(np.prod(ODD_OUT)), ODD_D, seed + 1)


def write_key(path, key: bytes):
    """A key file as ``advface-fast keygen`` writes it (hex, mode 0600: group- or world-readable
    key files are refused); :func:`advface_fast.keys.load_key` reads ``key`` back."""
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


def unit_rows(n: int, dim: int, seed: int = 0, dtype: type = np.float32) -> np.ndarray:
    """Random unit-norm features ``(n, dim)``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dim))
    return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(dtype)


def assert_same_protection(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to GEMM rounding of the start point.

    The shadow start E(S(z)) is a GEMM output, and BLAS rounds a product differently for other
    batch sizes or memory layouts (~1 ulp); the sign steps themselves are exact. So two runs of
    the same rows agree within a few ulps of the (unit-scale) values: 8 eps of the dtype.
    """
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(a.dtype).eps * max(1.0, float(np.abs(b).max())))


def assert_within_lowp_error(out: torch.Tensor, oracle: torch.Tensor, plain: torch.Tensor, factor: float = 2.0) -> None:
    """flash-attention's criterion: the kernel's error against the float64 ``oracle`` is at most
    ``factor`` times plain PyTorch's error (``plain``: the same op in torch at the kernel's
    precision), plus one float32 ulp of the output's scale for ops that torch gets exact."""
    oracle = oracle.double()
    err = (out.double() - oracle).abs().max().item()
    base = (plain.double() - oracle).abs().max().item()
    floor = float(torch.finfo(torch.float32).eps) * max(1.0, oracle.abs().max().item())
    assert err <= factor * base + floor, f"kernel error {err:.3g} > {factor} x torch error {base:.3g} + {floor:.3g}"


def triton_interpreter_broken() -> str | None:
    """Why Triton's interpreter cannot run here, or None. Triton 3.6's interpreter calls int() on
    one-element arrays, which numpy >= 2.5 refuses (fixed in Triton 3.7); the GPU machines pair
    Triton 3.6 with numpy 2.5, where the GPU check script tests the compiled kernels instead."""
    try:
        import triton
    except ImportError:
        return "Triton is not installed"
    tv = tuple(int(x) for x in triton.__version__.split(".")[:2])
    nv = tuple(int(x) for x in np.__version__.split(".")[:2])
    if tv < (3, 7) and nv >= (2, 5):
        return f"Triton {triton.__version__}'s interpreter fails with numpy {np.__version__} (fixed in Triton 3.7)"
    return None


# Activations of the fused Triton ops' tests (slope 0.2 for leaky_relu), by name.
ACT_FNS = {a: functools.partial(hidden_activation, act=a, negative_slope=0.2) for a in HIDDEN_ACTS}
OUT_FNS = {a: functools.partial(output_activation, out_act=a) for a in OUT_ACTS}


def sign_margin_floor(plain: torch.Tensor, oracle: torch.Tensor) -> float:
    """Where a sign's argument is within 4x plain PyTorch's error (``plain`` against the float64
    ``oracle``) either sign is a correct rounding; beyond it a kernel must agree exactly."""
    return 4 * (plain.double() - oracle).abs().max().item() + 1e-12


def needs_gpu(test, reason: str = "needs a CUDA GPU (run by benchmarks/gpu_check.sh)"):
    """Mark ``test`` as a GPU test (``-m gpu``; ``make test-fast`` leaves it out) and skip it, saying
    why, where no CUDA device exists."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)(test))


def synthetic_photo_folder(
    root, people: int, per_person: int, *, size: int = 64, id_offset: int = 300_000, var_offset: int = 0, names=None
):
    """A tiny generated photo folder (no real faces): ``root/<name>/<k>.png`` of synthetic-world
    faces, one sub-folder per person (names ``person_00`` .. unless given). Returns the names."""
    from pathlib import Path

    from PIL import Image

    from advface_fast.data.synthfaces import SynthFaces

    world = SynthFaces(size)
    names = list(names) if names is not None else [f"person_{k:02d}" for k in range(people)]
    for k, name in enumerate(names):
        imgs = world.render(torch.full((per_person,), id_offset + k), torch.arange(var_offset, var_offset + per_person))
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for v, img in enumerate(imgs):
            pixels = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(folder / f"{var_offset + v}.png")
    return names


def enrolled_people(root, people: int):
    """A matcher's world on generated photos: ``people`` x 3 photos in ``root/people`` embedded by
    the shipped encoder into ``root/templates.npy`` (with ids and labels), and one fresh photo per
    person in ``root/fresh`` embedded as probes. Returns ``(encoder path, gallery embedding,
    probe embedding, enrolment ids)``."""
    from advface_fast.faces.photo_gallery import embed_photos, write_templates
    from advface_fast.models.defaults import ASSETS

    encoder = str(ASSETS / "encoder.safetensors")
    synthetic_photo_folder(root / "people", people, 3, size=32)
    synthetic_photo_folder(root / "fresh", people, 1, size=32, var_offset=7)
    emb = embed_photos(root / "people", encoder, cache_dir="", progress=False)
    write_templates(root / "templates.npy", emb, encoder, source="people")
    probes = embed_photos(root / "fresh", encoder, cache_dir="", progress=False)
    return encoder, emb, probes, np.load(root / "templates.ids.npy")
