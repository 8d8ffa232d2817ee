"""Engine properties: batch independence, determinism, no side effects on the caller's modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_same_protection, make_pair, unit_rows

import advface_fast as af
from advface_fast.engines.seeding import row_uniform

KW = {"eps": 0.05, "alpha": 0.01, "steps": 5, "progress": False}


@pytest.mark.parametrize("start", ["shadow", "random", "original"])
def test_row_result_does_not_depend_on_batch(start):
    """Nothing in the algorithm couples rows. What BLAS does differ with the batch size is the
    blocking of its GEMMs, i.e. the rounding (~1 ulp) of each matrix product. Inside the loop that
    rounding reaches the result only through signs, so the loop is exact unless an element sits
    within 1e-16 of zero (float64); the shadow start point E(S(z)) is a plain GEMM output and so
    carries those ulps into the result (see helpers.assert_same_protection)."""
    dec, enc = make_pair(dtype=torch.float64)
    z = unit_rows(37, 24, seed=1, dtype=np.float64)
    images = np.random.default_rng(2).uniform(-1, 1, (37, 3, 6, 5)) if start == "original" else None

    def check(a, b):
        if start == "shadow":
            assert_same_protection(a, b)
        else:
            np.testing.assert_array_equal(a, b)

    runs = [af.protect(z, dec, enc, start=start, images=images, batch_size=bs, **KW) for bs in (1, 7, 64)]
    for r in runs[1:]:
        check(r, runs[0])
    # A row protected alone (as row 0 of a one-row gallery, its id passed along) equals the same row in the big run.
    i = 13
    alone = af.protect(
        z[i : i + 1], dec, enc, start=start, row_ids=[i], images=None if images is None else images[i : i + 1], **KW
    )
    check(alone[0], runs[0][i])


def test_conv_decoder_with_batchnorm_is_batch_independent_and_caller_mode_kept():
    torch.manual_seed(0)
    dec = af.ConvDecoder(16, (3, 16, 16), base_channels=8).double().train()
    z = unit_rows(10, 16, seed=3, dtype=np.float64)
    a = af.protect(z, dec, start="random", batch_size=10, **KW)
    b = af.protect(z, dec, start="random", batch_size=3, **KW)
    np.testing.assert_array_equal(a, b)
    assert dec.training, "the caller's module must keep its mode"
    assert all(p.requires_grad and p.grad is None for p in dec.parameters())


def test_deterministic_for_seed_and_seed_matters():
    dec, enc = make_pair()
    z = unit_rows(20, 24, seed=4)
    a = af.protect(z, dec, enc, start="random", seed=5, **KW)
    b = af.protect(z, dec, enc, start="random", seed=5, **KW)
    c = af.protect(z, dec, enc, start="random", seed=6, **KW)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


def test_row_ids_key_the_random_start():
    dec, _ = make_pair()
    z = unit_rows(6, 24, seed=7)
    base = af.protect(z, dec, start="random", **KW)
    shuffled = af.protect(z[::-1].copy(), dec, start="random", row_ids=np.arange(6)[::-1].copy(), **KW)
    np.testing.assert_array_equal(shuffled[::-1], base)


def test_perturbation_bounded_and_renorm_keeps_norms():
    dec, enc = make_pair()
    z = unit_rows(30, 24, seed=8) * np.linspace(0.5, 3, 30, dtype=np.float32)[:, None]
    raw = af.protect(z, dec, enc, start="random", renorm=False, **KW)
    # the ball is on the direction: |raw - z| <= eps * ||z|| per row
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    assert (np.abs(raw - z) <= KW["eps"] * norms * (1 + 1e-6)).all()
    ren = af.protect(z, dec, enc, start="random", renorm=True, **KW)
    np.testing.assert_allclose(np.linalg.norm(ren, axis=1), np.linalg.norm(z, axis=1), rtol=1e-6)


@pytest.mark.parametrize("scale", [25.0, 1e-3, 1e6])
def test_a_gallery_at_any_scale_gets_its_directions_protection(scale):
    """Protection is defined on the direction: a gallery scaled by s comes back as s times the
    unit gallery's protection (not nearly unchanged, as an absolute eps would leave a 25x gallery)."""
    dec, enc = make_pair()
    z = unit_rows(20, 24, seed=3)
    unit = af.protect(z, dec, enc, start="random", **KW)
    big = af.protect(z * np.float32(scale), dec, enc, start="random", **KW)
    np.testing.assert_allclose(big / scale, unit, rtol=0, atol=2e-6)  # float32 rounding of z * s and back
    cos = (big * z).sum(1) / np.linalg.norm(big, axis=1)
    assert cos.max() < 0.999


@pytest.mark.parametrize("bad, what", [("zero", "all-zero template at row 3"), ("nan", "NaN or Inf")])
def test_zero_and_non_finite_templates_are_refused(bad, what):
    dec, enc = make_pair()
    z = unit_rows(6, 24, seed=3)
    z[3] = 0 if bad == "zero" else np.nan
    with pytest.raises(ValueError, match=what):
        af.protect(z, dec, enc, start="random", **KW)


def test_protection_increases_shadow_reconstruction_loss():
    """The loop ascends ||S(z) - x~||_1: after it the loss is larger than at the start point."""
    dec, enc = make_pair(seed=9)
    z = torch.from_numpy(unit_rows(40, 24, seed=10))
    out = af.protect(z, dec, enc, start="random", renorm=False, steps=10, eps=0.1, alpha=0.02, progress=False)
    with torch.no_grad():
        x_shadow = dec(z)
        z0 = z + 0.1 * row_uniform(0, np.arange(40), 24).float()
        before = (dec(z0) - x_shadow).abs().sum()
        after = (dec(out) - x_shadow).abs().sum()
    assert after > 1.5 * before


def test_input_never_modified(pair, gallery):
    dec, enc = pair
    original = gallery.copy()
    t = torch.from_numpy(gallery.copy())
    t_copy = t.clone()
    af.protect(gallery, dec, enc, **KW)
    af.protect(t, dec, enc, **KW)
    np.testing.assert_array_equal(gallery, original)
    assert torch.equal(t, t_copy)


def test_params_validation():
    with pytest.raises(ValueError, match="start="):
        af.ProtectParams(eps=0.1, alpha=0.1, steps=1, start="middle")
    with pytest.raises(TypeError, match="seed"):
        af.ProtectParams(eps=0.1, alpha=0.1, steps=1, seed=1.5)
