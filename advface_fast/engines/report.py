"""What ``advface-fast backends`` prints: every registered name, whether it can run on a device and
why not, what each family resolves to, and what ``auto`` picks for an MLPDecoder."""

from __future__ import annotations

import torch

from ..errors import BackendUnavailableError
from ..settings import PRECISIONS
from . import overrides
from .registry import ALIASES, ENGINES, FAMILIES, backend_names, resolve_backend, supports


def _detail(name: str, device: torch.device) -> str:
    """Run-time facts worth a line's end: the mlp-eager engine's bf16 GEMM kernel on the CPU."""
    if name != "mlp-eager" or device.type != "cpu":
        return ""
    from .mlp_eager import AMX_MAX_ROWS
    from .ops import amx_unavailable_reason

    amx = amx_unavailable_reason() if overrides.cpu_amx() else "ADVFACE_CPU_AMX=0"
    return f" (bf16 GEMMs of <= {AMX_MAX_ROWS} rows: " + ("AMX tiles)" if amx is None else "oneDNN)")


def engine_report(device: str | torch.device) -> list[str]:
    """The lines of the report for ``device``."""
    from ..models.decoders import MLPDecoder

    dev = torch.device(device)
    dec = MLPDecoder(8, [8], (1, 2, 2))
    width = max(map(len, backend_names()))
    lines = [f"device {dev}"]
    for name in backend_names()[1:]:
        engine, reason = supports(name, dec, dev, "fp32")
        if name in ALIASES:
            what = f"old name of {ALIASES[name]}"
        elif name in FAMILIES:
            what = FAMILIES[name].describe()
        else:
            what = ENGINES[name].describe()
        if reason is not None:
            state = "unavailable: " + reason
        elif name in FAMILIES:
            state = f"available -> {engine.name}"
        else:
            state = "available" + _detail(name, dev)
        lines.append(f"{name:{width}}  {state}")
        lines.append(f"{'':{width}}    {what}")
    picks = []
    for precision in PRECISIONS:
        try:
            picks.append(f"{precision} -> {resolve_backend('auto', dec, dev, precision).name}")
        except BackendUnavailableError:  # tf32 on a CPU, no CUDA device (the reasons are above)
            picks.append(f"{precision} -> none")
    lines.append(f"{'auto':{width}}  for an MLPDecoder: " + ", ".join(picks) + " (other decoders: torch)")
    return lines
