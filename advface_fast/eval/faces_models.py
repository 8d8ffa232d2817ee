"""The models of a real-faces evaluation, trained once and cached: the defender's shadow decoder
(an MLPDecoder, so the fused engines apply) and the attackers (other architectures, one trained
with an identity loss through E), all on the training faces, disjoint from the evaluated ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..encoders.base import differentiable
from ..models.decoders import MLPDecoder
from ..models.serialization import KEY_ENCODER
from ..train import fit_decoder
from ..train.identity import finetune_identity
from .attackers import make_attacker
from .faces_config import FacesEvalConfig
from .faces_data import FacesData, cache_key
from .model_cache import cached_model


def train_cached(
    name: str, make: Callable[[], torch.nn.Module], data: FacesData, cfg: FacesEvalConfig, epochs: int, log, progress
) -> torch.nn.Module:
    key = cache_key(name, data.train_key, data.encoder_key, cfg.size, epochs, cfg.seed, cfg.shadow_hidden)
    path = data.cache / "models" / f"{name}-{key}.safetensors"

    def train() -> torch.nn.Module:
        n_val = max(1, len(data.z_train) // 40)
        g = torch.Generator().manual_seed(cfg.seed)
        perm = torch.randperm(len(data.z_train), generator=g)
        val, tr = perm[:n_val], perm[n_val:]
        model, hist = fit_decoder(
            data.z_train[tr],
            data.x_train[tr],
            make(),
            val=(data.z_train[val], data.x_train[val]),
            epochs=epochs,
            batch_size=128,
            seed=cfg.seed + 7,
            checkpoint=path.with_suffix(".ckpt"),
            progress=progress,
            log=lambda s: None,
        )
        last = hist[-1]
        log(f"{name}: val L1 {last.get('val_l1', float('nan')):.3f}, SSIM {last.get('val_ssim', float('nan')):.3f}")
        return model

    model = cached_model(path, train, log, name, metadata={KEY_ENCODER: data.encoder_key})
    path.with_suffix(".ckpt").unlink(missing_ok=True)
    return model


def identity_finetuned(
    name: str,
    model: torch.nn.Module,
    key_parts: tuple,
    steps: int,
    data: FacesData,
    cfg: FacesEvalConfig,
    log: Callable[[str], None],
    progress: bool,
) -> torch.nn.Module:
    """A copy of ``model`` fine-tuned with the identity loss through E for ``steps`` steps
    (:func:`~advface_fast.train.identity.finetune_identity`), cached under ``name`` and the key of
    ``model``'s own training (``key_parts``) and the data."""
    import copy

    key = cache_key(name, data.train_key, data.encoder_key, cfg.size, *key_parts, steps, cfg.seed)
    path = data.cache / "models" / f"{name}-{key}.safetensors"

    def train() -> torch.nn.Module:
        tuned, _ = finetune_identity(
            copy.deepcopy(model),
            data.z_train,
            data.x_train,
            differentiable(data.encoder),
            steps=steps,
            seed=cfg.seed,
            progress=progress,
            log=log,
        )
        return tuned

    return cached_model(path, train, log, name, metadata={KEY_ENCODER: data.encoder_key})


def attackers(data: FacesData, cfg: FacesEvalConfig, log, progress) -> dict[str, torch.nn.Module]:
    """The attackers: L1 decoders of ``cfg.attackers`` and the identity-loss one (cached)."""
    dim, shape = data.z_test.shape[1], (3, cfg.size, cfg.size)
    names = dict.fromkeys([*cfg.attackers, *([cfg.identity_attacker] if cfg.identity_attacker else [])])
    epochs = {a: cfg.attacker_epochs_by_name.get(a, cfg.attacker_epochs) for a in names}
    out = {
        a: train_cached(f"attacker-{a}", lambda a=a: make_attacker(a, dim, shape), data, cfg, epochs[a], log, progress)
        for a in names
    }
    if cfg.identity_attacker:
        base = cfg.identity_attacker
        out[f"{base}+id"] = identity_finetuned(
            f"attacker-{base}+id", out[base], (epochs[base],), cfg.identity_steps, data, cfg, log, progress
        )
        if base not in cfg.attackers:
            del out[base]
    return out


def identity_shadow(
    shadow: torch.nn.Module, data: FacesData, cfg: FacesEvalConfig, log: Callable[[str], None], progress: bool
) -> torch.nn.Module:
    """The defender's shadow decoder fine-tuned with the identity loss through E (the defender's
    own model) for ``cfg.shadow_identity_steps`` steps: still an MLPDecoder, so the fused engines
    apply; its reconstructions are recognised by E as the template, which moves the offline start
    ``E(S(z))`` less far from ``z``."""
    key = (cfg.shadow_epochs, tuple(cfg.shadow_hidden))
    return identity_finetuned("shadow-mlp+id", shadow, key, cfg.shadow_identity_steps, data, cfg, log, progress)


def prepare(
    cfg: FacesEvalConfig, out: Path, cache_dir: str | Path | None, log: Callable[[str], None], progress: bool
) -> tuple[FacesData, torch.nn.Module, dict[str, torch.nn.Module]]:
    """What every real-faces run starts from (all cached): the data, the shadow decoder, the attackers."""
    from ..io.cache import default_cache_dir

    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    data = FacesData(cfg, cache, log, progress)
    dim, shape = data.z_test.shape[1], (3, cfg.size, cfg.size)
    log(f"system threshold {data.threshold:.3f} (squared L2); E2 threshold {data.e2_threshold}")
    shadow = train_cached(
        "shadow-mlp", lambda: MLPDecoder(dim, cfg.shadow_hidden, shape), data, cfg, cfg.shadow_epochs, log, progress
    )
    return data, shadow, attackers(data, cfg, log, progress)
