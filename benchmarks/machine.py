"""What a benchmark records about the machine it ran on."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("AMD EPYC ..."), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def run_header(prefix: str = "", **versions: str) -> dict:
    """What every results file opens with: the command that wrote it (from the current folder,
    ``prefix`` before ``python``, e.g. ``"PYTHONPATH=benchmarks "``), the machine (CPU model and
    torch threads) and the versions (advface_fast, torch, and ``versions``)."""
    import os
    import shlex
    import sys

    import torch

    import advface_fast as af

    return {
        "command": f"cd {os.getcwd()} && {prefix}python " + shlex.join(sys.argv),
        "machine": f"{cpu_model()}, {torch.get_num_threads()} threads",
        "versions": {"advface_fast": af.__version__, "torch": torch.__version__, **versions},
    }
