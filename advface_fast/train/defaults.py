"""Reproduce the default model pair of the synthetic-face world (``advface-fast train-default``).

See :mod:`advface_fast.models.defaults` for what the models are and how they are loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..data.synthfaces import SynthFaces
from ..data.world import IDS, WORLD
from ..encoders.base import TorchEncoder
from ..models.decoders import ConvDecoder, MLPDecoder
from ..models.serialization import save_model
from .decoder import train_decoder
from .encoder import train_encoder


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
