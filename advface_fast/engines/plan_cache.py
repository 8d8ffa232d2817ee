"""The one weight-plan cache of the engines.

An engine converts a decoder's weights once (to the GEMM dtype, packed, on the device) and keeps
the result, a *plan*, with the buffers of its loop. :class:`PlanCache` holds the plans of every
decoder under a *slot* (what the plan was built for: device, precision, batch size, ...), and
rebuilds a plan when the decoder's parameters were replaced or changed in place since it was
built (:func:`~advface_fast.engines.plan_cache.params_key`: identity and version of each parameter). The
decoder is held weakly: its plans go with it. Used by the eager engine (weights), the CUDA engine
(a loop per batch size) and the Triton engine (weights and workspaces).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from torch import nn

P = TypeVar("P")


class PlanCache(Generic[P]):
    """Plans per (decoder, slot); at most ``per_decoder`` slots per decoder (least recently used
    dropped first; None: no bound)."""

    def __init__(self, per_decoder: int | None = None) -> None:
        self.per_decoder = per_decoder
        self._plans: weakref.WeakKeyDictionary[nn.Module, OrderedDict[tuple, tuple[tuple, P]]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, decoder: nn.Module, slot: tuple, build: Callable[[], P]) -> P:
        """The plan of ``decoder`` in ``slot``, built by ``build()`` when missing or stale."""
        version = params_key(decoder)
        plans = self._plans.setdefault(decoder, OrderedDict())
        entry = plans.get(slot)
        if entry is None or entry[0] != version:
            entry = (version, build())
            plans[slot] = entry
            while self.per_decoder is not None and len(plans) > self.per_decoder:
                plans.popitem(last=False)
        plans.move_to_end(slot)
        return entry[1]

    def plans(self, decoder: nn.Module) -> dict[tuple, P]:
        """``{slot: plan}`` held for ``decoder`` (oldest first)."""
        return {slot: plan for slot, (_, plan) in self._plans.get(decoder, {}).items()}

    def clear(self) -> None:
        self._plans.clear()


def params_key(decoder: nn.Module) -> tuple:
    """The key of the engines' weight-plan caches for an MLPDecoder (``decoder.layers``): changes
    whenever a parameter is replaced or modified in place (``_version``). The layers' weights and
    biases are read directly, not through ``parameters()``, whose module walk costs more and is
    paid on every call."""
    return tuple((p.data_ptr(), p._version) for layer in decoder.layers for p in (layer.weight, layer.bias))
