"""Metrics: image quality of reconstructions (``image``) and face verification (``verification``)."""

from .image import psnr, ssim, ssim_skimage
from .verification import far_supported, genuine_impostor_pairs, pair_distances, tar_at_far, verification_accuracy

__all__ = [
    "far_supported",
    "genuine_impostor_pairs",
    "pair_distances",
    "psnr",
    "ssim",
    "ssim_skimage",
    "tar_at_far",
    "verification_accuracy",
]
