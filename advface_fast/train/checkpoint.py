"""Training checkpoints as safetensors (no pickle): model weights, optimizer state, progress.

Tensors go under ``model.*`` and ``optim.<param index>.<name>``; everything else (the optimizer's
hyper-parameters and scalar state, the epoch, the run's settings) is JSON in the metadata.
Shuffling is derived from ``(seed, epoch)``, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import ModelFormatError, ResumeMismatchError
from ..models.serialization import default_file_mode


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any]
) -> Path:
    """Atomically write ``model``, ``optimizer`` and ``progress`` (JSON-serialisable) to ``path``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    sd = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            if torch.is_tensor(val) and val.dim() > 0:
                tensors[f"optim.{idx}.{name}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = val.item() if torch.is_tensor(val) else val
    meta = {
        "advface_fast.checkpoint": "1",
        "param_groups": json.dumps(sd["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        "progress": json.dumps(progress),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    expect_run: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` from ``path``; returns the saved progress dict.

    ``expect_run``: the settings this run must share with the checkpoint's (for example the
    encoder the features come from); a checkpoint that recorded other values is refused with
    :class:`ResumeMismatchError` before anything is loaded."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a readable checkpoint ({exc})") from exc
    if meta.get("advface_fast.checkpoint") != "1":
        raise ModelFormatError(f"{path} is not an advface_fast training checkpoint")
    saved_run = json.loads(meta["progress"]).get("run") or {}
    for k, want in (expect_run or {}).items():
        if k in saved_run and saved_run[k] != want:
            raise ResumeMismatchError(
                f"{path} was trained with {k} = {saved_run[k]!r}, this run has {want!r}: resuming would mix "
                "the two. Use another checkpoint path, or --no-resume (resume=False) to start over."
            )
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in json.loads(meta["optim_scalars"]).items():
        for name, val in st.items():
            state.setdefault(int(idx), {})[name] = torch.tensor(val) if name == "step" else val
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return json.loads(meta["progress"])
