"""Training: face encoders (margin softmax) and feature-to-image decoders (equation 1)."""

from .decoder import fit_decoder, train_decoder
from .encoder import MarginHead, embed, train_encoder, verification_pairs

__all__ = ["MarginHead", "embed", "fit_decoder", "train_decoder", "train_encoder", "verification_pairs"]
