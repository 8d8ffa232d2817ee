"""The default model pair of the synthetic-face world, shipped in ``advface_fast/assets``.

``advface-fast train-default`` reproduces it: a :class:`~advface_fast.face_encoder.FaceEncoder`
(CosFace) trained on identities 0-999 of the world, the defender's shadow decoder (an
:class:`~advface_fast.decoders.MLPDecoder`, the fused kernels' family) trained on the same
defender data, and a non-adaptive attacker of another architecture (a
:class:`~advface_fast.decoders.ConvDecoder`) trained on identities the defender never saw
(200000-200999). Held-out identities for evaluation start at 300000; the encoder's validation
identities at 100000.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.synthfaces import SynthFaces
from .decoders import ConvDecoder, MLPDecoder
from .serialization import load_model, save_model

ASSETS = Path(__file__).resolve().parent / "assets"
MODELS_ENV = "ADVFACE_MODELS"  # a folder of models from `advface-fast train-default --out-dir`
WORLD = {"size": 32, "seed": 0, "dim": 128}
IDS = {"train": 0, "encoder_val": 100_000, "attacker": 200_000, "heldout": 300_000}


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


def train_default(
    out_dir: str | Path,
    *,
    ids: int = 1000,
    per_id: int = 16,
    encoder_epochs: int = 8,
    decoder_epochs: int = 20,
    dim: int = WORLD["dim"],
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Train the default models and save them in ``out_dir`` (the package's own ``ASSETS`` only
    when passed explicitly, as the maintainers do); returns the numbers written to
    ``default.json``. Point ``$ADVFACE_MODELS`` at ``out_dir`` to use them. ``dim`` is the
    template dimension (the shipped models: 128; e.g. 512 to measure the package on templates of
    ArcFace-class size in the same world)."""
    from .encoders import TorchEncoder
    from .train import train_decoder, train_encoder

    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    world = SynthFaces(WORLD["size"], WORLD["seed"])
    t0 = time.time()
    x_tr, y_tr = world.dataset(ids, per_id, id_offset=IDS["train"])
    x_val, y_val = world.dataset(300, 10, id_offset=IDS["encoder_val"])
    x_att, _ = world.dataset(ids, per_id, id_offset=IDS["attacker"])
    x_dec_val, _ = world.dataset(200, 2, id_offset=IDS["heldout"])
    log(f"rendered {len(x_tr) + len(x_val) + len(x_att) + len(x_dec_val)} images in {time.time() - t0:.1f} s")
    encoder, enc_hist = train_encoder(
        x_tr, y_tr, val=(x_val, y_val), dim=dim, epochs=encoder_epochs, progress=progress, log=log
    )
    save_model(encoder, out / "encoder.safetensors")
    enc = TorchEncoder(encoder)
    shadow, sh_hist = train_decoder(
        enc,
        x_tr,
        MLPDecoder(dim, [512, 1024], (3, WORLD["size"], WORLD["size"])),
        val_images=x_dec_val,
        epochs=decoder_epochs,
        progress=progress,
        log=log,
    )
    save_model(shadow, out / "shadow.safetensors")
    attacker, at_hist = train_decoder(
        enc,
        x_att,
        ConvDecoder(dim, (3, WORLD["size"], WORLD["size"]), 32),
        val_images=x_dec_val,
        epochs=decoder_epochs,
        seed=1,
        progress=progress,
        log=log,
    )
    save_model(attacker, out / "attacker.safetensors")
    info = {
        "world": {**WORLD, "dim": dim},
        "ids": IDS,
        "train_ids": ids,
        "per_id": per_id,
        "encoder": enc_hist[-1],
        "shadow": sh_hist[-1],
        "attacker": at_hist[-1],
        "seconds": round(time.time() - t0, 1),
        "torch": torch.__version__,
    }
    (out / "default.json").write_text(json.dumps(info, indent=2) + "\n")
    log(json.dumps(info))
    return info
