"""A digest of a module's class and weights: what identifies a shadow decoder or an encoder in run
manifests, resume checks and the settings a database table is protected with. (The engines'
cheap identity-and-version key is :func:`~advface_fast.engines.plan_cache.params_key`.)"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def module_fingerprint(module: nn.Module) -> str:
    """blake2b-128 hex of the class name and every state-dict entry's name, shape, dtype and bytes."""
    h = hashlib.blake2b(digest_size=16)
    h.update(type(module).__qualname__.encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
