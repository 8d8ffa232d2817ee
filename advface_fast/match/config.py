"""The deployment configuration: the protection settings and the decision threshold, fitted
together. ``advface-fast calibrate-deployment`` writes it; ``protect``/``index`` take their
settings from it (``--deployment``); the matcher reads the threshold from it and refuses a
gallery protected with other settings (the threshold was fitted for exactly those).

The file is JSON::

    {"format": "advface_fast.deployment/1", "threshold": 0.41, "far": 0.001,
     "settings": {"eps": ..., "alpha": ..., "steps": ..., "start": ..., "renorm": ..., "seed": ...,
                  "rotate": true, "precision": "fp32"},
     "key_id": "...", "decoder": "...", "encoder": {...},
     "measured": {"clean": {...}, "protected": {...}, "impostors": ...}}

``threshold`` is a cosine similarity; the decision rule is ``accept = score > threshold``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..encoders.base import same_encoder

FORMAT = "advface_fast.deployment/1"
# the settings a threshold is fitted for: anything else about the run does not change a template
SETTING_KEYS = ("eps", "alpha", "steps", "start", "renorm", "seed", "rotate", "precision")
# optional settings, with the value their absence means (files written before they existed)
OPTIONAL_KEYS = {"shards": 1}


@dataclass(frozen=True)
class DeploymentConfig:
    """Settings and threshold of a deployment (see the module docstring)."""

    threshold: float
    far: float
    settings: dict[str, Any]
    key_id: str | None
    decoder: str | None
    encoder: dict[str, Any] | None
    measured: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (
            isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and -1 <= self.threshold <= 1
        ):
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {self.threshold!r}")
        if not (isinstance(self.far, (int, float)) and 0 < self.far < 1):
            raise ValueError(f"far must be in (0, 1), got {self.far!r}")
        missing = [k for k in SETTING_KEYS if k not in self.settings]
        if missing:
            raise ValueError(f"the deployment's settings lack {', '.join(missing)}")

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        from ..io.atomic import atomic_path, check_output

        out = check_output(path, overwrite)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=2, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeploymentConfig:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(
                f"deployment configuration not found: {p} (write one with `advface-fast calibrate-deployment`)"
            )
        try:
            d = json.loads(p.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p} is not a deployment configuration (not JSON: {exc})") from exc
        if not isinstance(d, dict) or d.pop("format", None) != FORMAT:
            raise ValueError(f"{p} is not a deployment configuration (format {FORMAT})")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ValueError(f"{p}: {exc}") from exc

    def run_settings(self) -> dict[str, Any]:
        """The :class:`~advface_fast.settings.RunSettings` keywords of these settings."""
        return {k: self.settings[k] for k in SETTING_KEYS} | {
            k: self.settings[k] for k in OPTIONAL_KEYS if k in self.settings
        }

    def check_gallery(self, record: dict[str, Any], where: str) -> None:
        """Refuse a gallery (its provenance record) protected otherwise than this configuration
        says: the threshold holds only for the settings, decoder and key it was fitted with."""
        prot = record.get("protection") or {}
        got = prot.get("settings", {})
        diff = [
            f"{k} {got.get(k)!r} (deployment: {self.settings[k]!r})"
            for k in SETTING_KEYS
            if not _same(got.get(k), self.settings[k])
        ]
        for k, absent in OPTIONAL_KEYS.items():
            if not _same(got.get(k, absent), self.settings.get(k, absent)):
                diff.append(f"{k} {got.get(k, absent)!r} (deployment: {self.settings.get(k, absent)!r})")
        if self.decoder is not None and prot.get("decoder") != self.decoder:
            diff.append(f"decoder {prot.get('decoder')} (deployment: {self.decoder})")
        enc, want = record.get("encoder") or {}, self.encoder or {}
        if not same_encoder(enc, want):
            diff.append(f"encoder {enc.get('name')!r} (deployment: {want.get('name')!r})")
        if diff:
            raise ValueError(
                f"{where} was not protected as the deployment configuration says, so its threshold does not hold: "
                + "; ".join(diff)
            )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return a == b
