"""Metrics against known answers: PSNR, SSIM, 10-fold verification accuracy, TAR@FAR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advface_fast.metrics import genuine_impostor_pairs, pair_distances, psnr, ssim, tar_at_far, verification_accuracy


def test_psnr_known_value():
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.2  # mse 0.04 on range 2 -> 10 log10(4 / 0.04) = 20 dB
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 20.0]), atol=1e-5)


def _ssim_numpy(x, y, data_range=2.0):
    """SSIM by the formula with a uniform window over the whole (single-channel) image."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = x.mean(), y.mean()
    vx, vy, cxy = x.var(), y.var(), ((x - mx) * (y - my)).mean()
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_ssim_properties_and_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-5)
    noisy = [ssim(x, (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1)).mean() for s in (0.05, 0.2, 0.8)]
    assert noisy[0] > noisy[1] > noisy[2]
    y = x.flip(3)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-6)
    # a window as large as the image with sigma -> inf is the plain formula
    a, b = x[:1, :1, :11, :11], y[:1, :1, :11, :11]
    want = _ssim_numpy(a.double().numpy(), b.double().numpy())
    assert math.isclose(float(ssim(a, b, win=11, sigma=1e6)), want, rel_tol=1e-3)


def test_ssim_agrees_with_scikit_image():
    pytest.importorskip("skimage", reason="scikit-image is the reference SSIM")
    from advface_fast.metrics import ssim_skimage

    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 32, 32, generator=g) * 2 - 1
    pairs = [(x, (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1)) for s in (0.05, 0.3, 1.0)]
    smooth = torch.nn.functional.avg_pool2d(x, 5, 1, 2)  # image-like structure, not only noise
    pairs.append((smooth, (smooth + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)))
    for a, b in pairs:
        np.testing.assert_allclose(ssim(a, b).numpy(), ssim_skimage(a, b), atol=1e-3)


def test_verification_accuracy_known_cases():
    same = np.tile([True, False], 50)
    separable = np.where(same, 0.3, 1.5)
    acc, std, thr = verification_accuracy(separable, same)
    assert acc == 1.0 and std == 0.0 and np.all((thr > 0.3) & (thr <= 1.5))
    # one mislabelled pair in each fold of 10: 90% everywhere
    flipped = same.copy()
    flipped[::10] = ~flipped[::10]
    acc, _, _ = verification_accuracy(separable, flipped)
    assert acc == pytest.approx(0.9)
    rng = np.random.default_rng(0)
    acc, _, _ = verification_accuracy(rng.uniform(0, 4, 2000), rng.random(2000) < 0.5)
    assert 0.4 < acc < 0.6
    with pytest.raises(ValueError, match="at least 10 pairs"):
        verification_accuracy(np.ones(5), np.ones(5, bool))


def test_pair_distances_are_squared_l2_of_unit_vectors():
    a = np.array([[3.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 0.0], [0.0, -5.0]])
    np.testing.assert_allclose(pair_distances(a, b), [0.0, 4.0])


def test_tar_at_far():
    imp = np.linspace(0.5, 3.5, 1000)  # 1000 impostor pairs
    gen = np.array([0.1, 0.4, 0.5015, 0.55, 2.0])
    dist = np.concatenate([gen, imp])
    same = np.concatenate([np.ones(5, bool), np.zeros(1000, bool)])
    # FAR 0: the threshold is the smallest impostor distance (0.5)
    assert tar_at_far(dist, same, 0.0) == pytest.approx(0.4)
    # FAR 1e-3: one impostor may pass, threshold 0.503
    assert tar_at_far(dist, same, 1e-3) == pytest.approx(0.6)
    # FAR 2e-2: twenty may pass, threshold 0.56
    assert tar_at_far(dist, same, 2e-2) == pytest.approx(0.8)


def test_genuine_impostor_pairs():
    i, j, same = genuine_impostor_pairs(50, seed=3)
    assert len(i) == len(j) == len(same) == 100 and same.sum() == 50
    assert np.all(i[same] == j[same]) and np.all(i[~same] != j[~same])
    assert sorted(i[same].tolist()) == sorted(i[~same].tolist()) == list(range(50))
    np.testing.assert_array_equal(genuine_impostor_pairs(50, seed=3)[1], j)


def test_tar_at_far_against_an_independent_count_and_refuses_unsupported_fars():
    from advface_fast.metrics import far_supported, tar_at_far

    rng = np.random.default_rng(0)
    same = np.concatenate([np.ones(300, bool), np.zeros(5000, bool)])
    dist = np.where(same, rng.normal(0.8, 0.3, len(same)), rng.normal(1.9, 0.2, len(same)))
    for far in (1e-1, 1e-2, 1e-3):
        tar = tar_at_far(dist, same, far)
        # the threshold the definition asks for: the largest one with at most far * impostors below it
        imp = np.sort(dist[~same])
        best = max(t for t in np.concatenate([imp, [np.inf]]) if (imp < t).sum() <= far * len(imp))
        assert tar == pytest.approx((dist[same] < best).mean())
    assert far_supported(1000, 1e-3) and not far_supported(999, 1e-3)
    with pytest.raises(ValueError, match=r"cannot measure FAR 0\.001"):
        tar_at_far(dist[:800], same[:800], 1e-3)  # 500 impostors: TAR at zero false accepts


def test_a_threshold_among_equally_accurate_ones_is_the_middle_not_the_strictest():
    """#38: genuine distances up to 0.5 (one at 0.6), impostors from 1.0: on each fold's training
    folds a range of thresholds (from just past the largest genuine distance to the smallest
    impostor one) is equally accurate; the fitted one is its middle (0.82-0.89 here), so the genuine
    pair at 0.6 in held-out fold 0 is accepted (the strictest, 0.51, rejected it)."""
    from advface_fast.metrics import verification_accuracy

    same = np.tile([True, False], 20)
    dist = np.where(same, np.linspace(0.1, 0.5, 40), 1.0 + np.linspace(0, 1, 40))
    folds = np.repeat(np.arange(4), 10)
    dist[0] = 0.6  # a genuine pair of fold 0 a little past the others
    acc, _, thr = verification_accuracy(dist, same, folds=folds)
    assert np.all((thr > 0.75) & (thr < 1.0)), thr
    assert acc == 1.0
