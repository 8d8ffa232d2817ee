"""What the real-faces benchmarks share: a protocol's data (aligned faces, embeddings; cached) and
the eval-faces shadow decoder for its encoder (trained once, cached)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from advface_fast.eval.faces_config import FacesEvalConfig
from advface_fast.eval.faces_data import FacesData
from advface_fast.eval.faces_models import train_cached
from advface_fast.io.cache import default_cache_dir
from advface_fast.models.decoders import MLPDecoder


def recognition_data(cfg: FacesEvalConfig, cache_dir: str | None) -> tuple[FacesEvalConfig, FacesData, torch.nn.Module]:
    """``cfg`` without judge or attackers (recognition and the shadow only), its data and shadow decoder."""
    cfg = dataclasses.replace(cfg, judge="none", attackers=[], identity_attacker=None)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    data = FacesData(cfg, cache, print, True)
    dim = data.z_test.shape[1]
    shadow = train_cached(
        "shadow-mlp", lambda: MLPDecoder(dim, cfg.shadow_hidden, (3, cfg.size, cfg.size)), data, cfg,
        cfg.shadow_epochs, print, True,
    )  # fmt: skip
    return cfg, data, shadow


EVAL_LFW_CONFIG = Path(__file__).parent / "results" / "eval-lfw" / "config.json"


def conv_attackers(
    config: str | Path, out: Path, cache_dir: str | None, progress: bool, **overrides
) -> tuple[FacesEvalConfig, FacesData, torch.nn.Module, dict[str, torch.nn.Module]]:
    """The real-faces evaluation of ``config`` (a FacesEvalConfig JSON) with only the conv
    attackers (``conv`` and ``conv+id``, the identity-loss fine-tune): its config, data, shadow
    decoder and attackers, from the eval-faces cache (trained on a first run). ``overrides``
    replace config fields that change no model (e.g. ``privacy_per_fold``)."""
    from advface_fast.eval.faces_models import prepare

    cfg = FacesEvalConfig.from_json(config)
    cfg = dataclasses.replace(cfg, attackers=["conv"], identity_attacker="conv", **overrides)
    data, shadow, attackers = prepare(cfg, out, cache_dir, print, progress)
    return cfg, data, shadow, attackers
