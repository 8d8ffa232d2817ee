"""The settings of a real-faces evaluation (:class:`FacesEvalConfig`) and the paper's LFW figures
it is compared with."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import DEFAULT_ALPHA, DEFAULT_EPS, DEFAULT_STEPS, default_eps
from .attackers import ATTACKERS
from .config import config_from_json

# the paper's LFW figures (Table 1 / Table 2 of AdvFace, CVPR 2023), for comparison only
PAPER_LFW = {
    "accuracy": {"unprotected": 98.13, "random": 97.07, "dp": 97.38, "online": 96.73, "offline": 98.05},
    "identity_inference": {"unprotected": 97.40, "random": 94.83, "dp": 94.00, "offline": 3.37},
}


@dataclass
class FacesEvalConfig:
    """Settings of a real-faces evaluation (JSON config files override any of them)."""

    CHOICES: typing.ClassVar[dict[str, tuple]] = {
        "detector": ("yunet", "none"),
        "judge": ("dlib", "none"),
        "attackers": ATTACKERS,
        "identity_attacker": ATTACKERS,
    }

    # the evaluated protocol: an LFW-format pairs file, or a folder with one sub-folder per identity
    pairs: str | None = "../shared/data/lfw/pairs.txt"
    pairs_images: str | None = None  # LFW image root (default: lfw-deepfunneled beside pairs.txt)
    test_folder: str | None = None  # instead of pairs: identity folders, pairs drawn LFW-style
    pairs_per_identity: int = 1  # with test_folder: matched (and as many mismatched) pairs per identity
    # the faces the defender and the attackers train on (disjoint from the evaluated images)
    train_images: str = "../shared/data/celeba_subset/images"
    train_identity: str | None = "../shared/data/celeba_subset/identity.txt"  # None: identity folders
    encoder: str = "sface"  # "sface", "mobilefacenet", or an .onnx / .tflite / .safetensors path with its contract
    detector: str = "yunet"  # "yunet" (five-point alignment) or "none" (the images are aligned already)
    judge: str = "dlib"  # "dlib" or "none"
    size: int = 64  # decoder output side (RGB); the encoder's contract resizes to its input
    shadow_hidden: list[int] = field(default_factory=lambda: [512, 1024])
    shadow_epochs: int = 30
    attackers: list[str] = field(default_factory=lambda: ["mlp_wide", "conv", "resup"])
    attacker_epochs: int = 30
    attacker_epochs_by_name: dict[str, int] = field(default_factory=dict)  # overrides, e.g. {"conv": 4}
    # an attacker with white-box E: this architecture's L1 decoder fine-tuned with an identity loss
    identity_attacker: str | None = "conv"
    identity_steps: int = 300
    # the defender's shadow decoder fine-tuned with the same identity loss through E (its own
    # model) for this many steps: rows "identity-trained shadow" beside the L1 one; 0: not run
    shadow_identity_steps: int = 0
    eps: float | None = None  # None: the package default for E's dimension (0.04 at SFace's 128-d)
    alpha_ratio: float = DEFAULT_ALPHA / DEFAULT_EPS
    steps: int = DEFAULT_STEPS
    laplace_epsilon: float = 200.0
    sweep_eps: list[float] | None = None  # None: sweep_eps_factors x eps
    sweep_eps_factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 3.0])
    sweep_laplace: list[float] = field(default_factory=lambda: [50.0, 200.0, 1000.0])
    privacy_per_fold: int = 100  # matched pairs per fold whose reconstructions E scores
    judge_per_fold: int = 30  # of those, how many E2 also scores (dlib: ~0.1 s a face)
    seed: int = 0
    note: str = ""

    @classmethod
    def from_json(cls, path: str | Path | None) -> FacesEvalConfig:
        return config_from_json(cls, path)

    def for_dim(self, dim: int) -> FacesEvalConfig:
        """This config with ``eps`` and ``sweep_eps`` resolved for ``dim``-dimensional templates."""
        eps = self.eps if self.eps is not None else default_eps(dim)
        sweep = self.sweep_eps if self.sweep_eps is not None else [round(f * eps, 6) for f in self.sweep_eps_factors]
        return dataclasses.replace(self, eps=eps, sweep_eps=sweep)
