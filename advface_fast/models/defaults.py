"""The default model pair of the synthetic-face world, shipped in ``advface_fast/assets``.

``advface-fast train-default`` reproduces it: a :class:`~advface_fast.models.face_encoder.FaceEncoder`
(CosFace) trained on identities 0-999 of the world, the defender's shadow decoder (an
:class:`~advface_fast.models.decoders.MLPDecoder`, the fused kernels' family) trained on the same
defender data, and a non-adaptive attacker of another architecture (a
:class:`~advface_fast.models.decoders.ConvDecoder`) trained on identities the defender never saw
(200000-200999). Held-out identities for evaluation start at 300000; the encoder's validation
identities at 100000.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data.synthfaces import SynthFaces
from ..data.world import WORLD
from .decoders import MLPDecoder
from .serialization import load_model

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODELS_ENV = "ADVFACE_MODELS"  # a folder of models from `advface-fast train-default --out-dir`


@dataclass
class DefaultModels:
    """The shipped models (eval mode, CPU) and the world they belong to."""

    encoder: nn.Module
    shadow: MLPDecoder
    attacker: nn.Module
    world: SynthFaces
    info: dict[str, Any]


def default_models_dir() -> Path:
    """Where the default models are read from: ``$ADVFACE_MODELS`` when set (models the user
    trained with ``advface-fast train-default --out-dir``), else the package's own assets."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else ASSETS


def load_default(path: str | Path | None = None) -> DefaultModels:
    """Load the default encoder, shadow decoder and attacker from ``path`` (default:
    :func:`default_models_dir`). Raise FileNotFoundError naming the command that creates them
    when they are missing."""
    root = Path(path) if path is not None else default_models_dir()
    files = {k: root / f"{k}.safetensors" for k in ("encoder", "shadow", "attacker")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"default models missing ({', '.join(missing)}); run `advface-fast train-default`")
    info = json.loads((root / "default.json").read_text()) if (root / "default.json").exists() else {}
    models = {k: load_model(p) for k, p in files.items()}
    return DefaultModels(
        models["encoder"], models["shadow"], models["attacker"], SynthFaces(WORLD["size"], WORLD["seed"]), info
    )
