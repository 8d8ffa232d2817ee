"""Training: face encoders (margin softmax) and feature-to-image decoders (equation 1)."""

from .decoder import fit_decoder, train_decoder
from .encoder import MarginHead, train_encoder, verification_pairs

__all__ = ["MarginHead", "fit_decoder", "train_decoder", "train_encoder", "verification_pairs"]
