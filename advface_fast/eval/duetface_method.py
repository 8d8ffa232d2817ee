"""DuetFace as an input-side method of the harness (:class:`~advface_fast.eval.methods.InputMethod`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..duetface.dct import block_idct, merge_channels
from ..duetface.model import DuetFace
from ..duetface.train import train_duetface
from ..encoders.base import TorchEncoder
from ..encoders.embed import embed
from ..models.serialization import load_model, save_model
from .methods import InputMethod, register_method


@register_method
class DuetFaceMethod(InputMethod):
    """DuetFace (Mi et al., ACM MM 2022; choices in :mod:`advface_fast.duetface.model`): templates
    are the server model's embeddings; the server also receives every face's high-frequency
    block-DCT channels (:meth:`server_view`)."""

    name = "DuetFace"

    def __init__(self, epochs: int = 8, seed: int = 0, **model_kwargs: Any) -> None:
        self.epochs, self.seed, self.model_kwargs = epochs, seed, model_kwargs
        self.model: DuetFace | None = None

    def fit(self, images: torch.Tensor, labels: torch.Tensor, val: tuple, cache: Path, log: Any) -> dict:
        cfg = DuetFace(image_size=images.shape[-1], **self.model_kwargs).config()
        tag = "-".join(f"{k}{v}" for k, v in cfg.items()) + f"-n{len(images)}-e{self.epochs}-s{self.seed}"
        path = cache / f"duetface-{tag}.safetensors"
        sidecar = path.with_name(path.name + ".history.json")
        if path.exists():
            log(f"DuetFace: reusing {path}")
            self.model = load_model(path).eval()
            saved = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            return {"reused": path.name, **saved}
        t0 = time.time()
        model, hist = train_duetface(
            images,
            labels,
            val=val,
            model=DuetFace(**cfg),
            epochs=self.epochs,
            seed=self.seed,
            checkpoint_dir=cache / f"duetface-{tag}-ckpt",
            progress=False,
            log=log,
        )
        save_model(model, path)
        record = {"train_seconds": time.time() - t0, **hist}
        sidecar.write_text(json.dumps(record, indent=1) + "\n")
        self.model = model
        return record

    def _need(self) -> DuetFace:
        if self.model is None:
            raise RuntimeError("fit() first")
        return self.model

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return embed(TorchEncoder(self._need()), images, batch=256, flip=False)

    @torch.no_grad()
    def server_view(self, images: torch.Tensor) -> torch.Tensor:
        m = self._need()
        return torch.cat([m.channels(images[a : a + 512])[1] for a in range(0, len(images), 512)])

    @torch.no_grad()
    def view_as_image(self, view: torch.Tensor) -> torch.Tensor:
        """The high-frequency channels as a person sees them: the inverse DCT with the client's
        channels set to zero, averaged back to the image size, ``(N, 3, S, S)``."""
        m = self._need()
        n_low = 3 * m.low_per_colour
        full = merge_channels(view.new_zeros(len(view), n_low, *view.shape[2:]), view, m.low_per_colour)
        return F.avg_pool2d(block_idct(full), m.upsample).clamp(-1, 1)
