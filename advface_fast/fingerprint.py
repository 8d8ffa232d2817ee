"""A digest of a module's class and weights (what identifies a shadow decoder or an encoder in run
manifests, resume checks and the settings a database table is protected with), and the cheap
identity-and-version key the engines' weight-plan caches are invalidated by."""

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


def params_key(decoder: nn.Module) -> tuple:
    """The key of the engines' weight-plan caches for an MLPDecoder (``decoder.layers``): changes
    whenever a parameter is replaced or modified in place (``_version``). The layers' weights and
    biases are read directly, not through ``parameters()``, whose module walk costs more and is
    paid on every call."""
    return tuple((p.data_ptr(), p._version) for layer in decoder.layers for p in (layer.weight, layer.bias))
