"""Save and load models as one safetensors file: the weights plus the config that rebuilds them.

The file's metadata holds ``advface_fast.format`` (the format version), ``advface_fast.class``
(a name registered with :func:`register_model`) and ``advface_fast.config`` (JSON of the
constructor arguments). Loading never unpickles anything: safetensors stores raw tensors and the
config is JSON, so a weight file from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ModelFormatError

FORMAT_VERSION = "1"
_KEY_FORMAT = "advface_fast.format"
_KEY_CLASS = "advface_fast.class"
_KEY_CONFIG = "advface_fast.config"
KEY_ENCODER = "advface_fast.encoder"  # JSON fingerprint of the encoder a decoder was trained for

# the encoder each loaded model's file records (weakly: it goes with the model)
_RECORDED_ENCODER: weakref.WeakKeyDictionary[nn.Module, tuple[str, dict]] = weakref.WeakKeyDictionary()
_REGISTRY: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_model(cls: M) -> M:
    """Class decorator: make ``cls`` loadable by :func:`load_model`.

    The class must define ``config() -> dict`` (JSON-serialisable) such that ``cls(**config())``
    rebuilds a module with the same parameter and buffer names and shapes.
    """
    if not callable(getattr(cls, "config", None)):
        raise TypeError(f"{cls.__name__} needs a config() method to be registered")
    _REGISTRY[cls.__name__] = cls
    return cls


def registered_models() -> dict[str, type[nn.Module]]:
    """Names and classes that :func:`load_model` can rebuild."""
    return dict(_REGISTRY)


def save_model(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` (a registered class) to ``path`` as safetensors with its config, plus any
    extra string ``metadata`` (e.g. :data:`KEY_ENCODER`: the encoder a decoder was trained for).

    The file is written under a temporary name and renamed, so ``path`` is either the old file or
    the complete new one. Returns the path.
    """
    name = type(model).__name__
    if _REGISTRY.get(name) is not type(model):
        raise TypeError(
            f"{name} is not a registered model class; decorate it with advface_fast.register_model "
            f"(registered: {', '.join(sorted(_REGISTRY))})"
        )
    config = model.config()  # type: ignore[operator]
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    extra = dict(metadata or {})
    if any(k.startswith("advface_fast.") and k not in (KEY_ENCODER,) for k in extra):
        raise ValueError(f"metadata keys {sorted(extra)} would overwrite the format's own")
    metadata = {**extra, _KEY_FORMAT: FORMAT_VERSION, _KEY_CLASS: name, _KEY_CONFIG: json.dumps(config)}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def default_file_mode() -> int:
    """``0o666`` under the process umask: the mode ``open()`` would give a new file. (safetensors
    creates its files 0600; a model is shared like any other file, and a user who keeps a private
    shadow decoder secret sets the umask or the folder's permissions.)"""
    try:  # Linux >= 4.7 reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting and restoring it
    os.umask(mask)
    return 0o666 & ~mask


def read_model_header(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """``(class name, config)`` of a model file, without loading its weights."""
    meta, _ = _open(path, load_tensors=False)
    return meta[_KEY_CLASS], json.loads(meta[_KEY_CONFIG])


def _stored_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a safetensors file from its header (no tensor is read)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def read_model_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """All metadata of a model file (format keys included), without loading its weights."""
    meta, _ = _open(path, load_tensors=False)
    return dict(meta)


def trained_for_encoder(path: str | os.PathLike[str]) -> dict | None:
    """The fingerprint of the encoder a decoder file was trained for, if it records one."""
    raw = read_model_metadata(path).get(KEY_ENCODER)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: the recorded encoder is not valid JSON ({exc})") from exc


def _open(path: str | os.PathLike[str], load_tensors: bool) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            # safe_open is not a dict: .keys() is its API (SIM118 does not apply)
            tensors = {k: f.get_tensor(k) for k in f.keys()} if load_tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFormatError(f"{path} is not a readable safetensors file ({exc})") from exc
    missing = [k for k in (_KEY_FORMAT, _KEY_CLASS, _KEY_CONFIG) if k not in meta]
    if missing:
        raise ModelFormatError(
            f"{path} is a safetensors file but not an advface_fast model (metadata lacks {', '.join(missing)})"
        )
    if meta[_KEY_FORMAT] != FORMAT_VERSION:
        raise ModelFormatError(f"{path} has model format {meta[_KEY_FORMAT]!r}; this version reads {FORMAT_VERSION!r}")
    if meta[_KEY_CLASS] not in _REGISTRY:
        raise ModelFormatError(
            f"{path} holds a {meta[_KEY_CLASS]!r}, which is not a registered model class "
            f"(registered: {', '.join(sorted(_REGISTRY))})"
        )
    try:
        json.loads(meta[_KEY_CONFIG])
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: the stored config is not valid JSON ({exc})") from exc
    return meta, tensors


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved at ``path`` by :func:`save_model` (in eval mode).

    Raises :class:`ModelFormatError` when the file is not a safetensors file written by
    advface_fast, names an unknown class, or its tensors do not match the config.
    """
    meta, _ = _open(path, load_tensors=False)
    cls = _REGISTRY[meta[_KEY_CLASS]]
    config = json.loads(meta[_KEY_CONFIG])
    # the config is built on the meta device first (no memory): a small file whose config asks for a
    # huge model is refused by comparing shapes before anything is allocated or read
    try:
        with torch.device("meta"):
            skeleton = cls(**config)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:  # bad sizes, Infinity, negatives
        raise ModelFormatError(f"{path}: cannot rebuild {cls.__name__} from its stored config ({exc})") from exc
    stored = _stored_shapes(path)
    for name, t in skeleton.state_dict().items():
        if name in stored and tuple(t.shape) != stored[name]:
            raise ModelFormatError(
                f"{path}: weights do not match the {cls.__name__} config (it asks for {name} of shape "
                f"{tuple(t.shape)}, the file stores {stored[name]}); nothing was allocated"
            )
    missing = sorted(set(skeleton.state_dict()) - set(stored))
    if missing:
        raise ModelFormatError(f"{path}: weights do not match the {cls.__name__} config (missing {missing[:3]})")
    del skeleton
    _, tensors = _open(path, load_tensors=True)
    try:
        model = cls(**config)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ModelFormatError(f"{path}: cannot rebuild {cls.__name__} from its stored config ({exc})") from exc
    expected = model.state_dict()
    for name, t in tensors.items():
        want = expected.get(name)
        if want is not None and t.dtype != want.dtype:
            raise ModelFormatError(f"{path}: {name} is stored as {t.dtype}, the model holds {want.dtype}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFormatError(f"{path}: {name} holds NaN or Inf")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(f"{path}: weights do not match the {cls.__name__} config ({exc})") from exc
    model = model.to(map_location).eval()
    if meta.get(KEY_ENCODER) is not None:
        _RECORDED_ENCODER[model] = (str(path), trained_for_encoder(path))
    return model


def recorded_encoder(model: nn.Module) -> tuple[str, dict] | None:
    """``(file, fingerprint)`` of the encoder a model loaded by :func:`load_model` was trained for,
    where its file records one (``train-shadow`` writes it); ``None`` otherwise."""
    return _RECORDED_ENCODER.get(model)
