"""Data: the synthetic face world and readers of real formats."""

from .readers import read_image_folder, read_insightface_bin, read_npy_images
from .synthfaces import SynthFaces, synth_faces

__all__ = ["SynthFaces", "read_image_folder", "read_insightface_bin", "read_npy_images", "synth_faces"]
