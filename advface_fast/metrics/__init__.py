"""Metrics: image quality of reconstructions (``image``), face verification (``verification``) and
recognition at a deployed system's fixed threshold (``operating_point``)."""

from .image import psnr, ssim, ssim_skimage
from .operating_point import OperatingPoint, cross_identity_scores, operating_point, threshold_at_far
from .verification import far_supported, genuine_impostor_pairs, pair_distances, tar_at_far, verification_accuracy

__all__ = [
    "OperatingPoint",
    "cross_identity_scores",
    "far_supported",
    "genuine_impostor_pairs",
    "operating_point",
    "pair_distances",
    "psnr",
    "ssim",
    "ssim_skimage",
    "tar_at_far",
    "threshold_at_far",
    "verification_accuracy",
]
