"""Data: the synthetic face world (``synthfaces``, its constants in ``world``), readers of real formats
(``readers``) and of labelled photo sets: LFW pairs, identity folders and lists (``photo_sets``)."""

from .readers import read_image_folder, read_insightface_bin, read_npy_images
from .synthfaces import SynthFaces, synth_faces

__all__ = ["SynthFaces", "read_image_folder", "read_insightface_bin", "read_npy_images", "synth_faces"]
