"""Image quality of reconstructions: PSNR and SSIM (ours, differentiable, and scikit-image's)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..optional import import_optional


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Per-image PSNR in dB of ``(B, C, H, W)`` images (default range 2: images in [-1, 1])."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, win: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: Gaussian window 11/1.5, K1 = 0.01, K2 = 0.03, valid
    region, mean over channels) of ``(B, C, H, W)`` images. The window shrinks to the image for
    images smaller than 11 pixels.

    Hand-written on purpose, for the training loops' per-epoch validation: batched on the
    tensors' own device and without the scikit-image dependency of a bare install. Every figure
    the evaluation reports uses :func:`ssim_skimage`; a test keeps the two within 1e-3."""
    x, y = x.float(), y.float()
    c = x.shape[1]
    win = min(win, x.shape[2], x.shape[3])
    w = _gaussian_window(win, sigma, c, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


def ssim_skimage(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per-image SSIM of ``(B, 3, H, W)`` images in [-1, 1] (scikit-image, Gaussian 11/1.5 window)."""
    structural_similarity = import_optional("skimage.metrics", "SSIM").structural_similarity

    a_ = a.permute(0, 2, 3, 1).double().numpy()
    b_ = b.permute(0, 2, 3, 1).double().numpy()
    return np.array(
        [
            structural_similarity(x, y, channel_axis=2, data_range=2.0, gaussian_weights=True, sigma=1.5)
            for x, y in zip(a_, b_, strict=True)
        ]
    )
