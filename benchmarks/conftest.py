"""pytest-benchmark suite settings: pinned threads, and a table of ratios from the same run.

The ratio table comes from ``test_paired_ratios``: implementations interleaved round by round,
each one's fastest round. These shared cores drift (two runs of the sequential per-test suite
differed by up to 1.8x in a median, and an implementation timed first in its group came out 25%
slower than interleaved), and noise only ever adds time, so the minimum over interleaved rounds
is the steadier estimate of what the code itself costs."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

THREADS = int(os.environ.get("ADVFACE_BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)
RESULTS: dict[tuple[str, int], dict[str, float]] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not RESULTS:
        return
    impls = sorted({k for v in RESULTS.values() for k in v})
    tr = terminalreporter
    tr.write_sep("=", f"rows/s and ratios (same run, {THREADS} threads, torch {torch.__version__})")
    tr.write_line(
        f"{'size':8}{'batch':>7}"
        + "".join(f"{i:>22}" for i in impls)
        + "   auto/torchattacks  auto/advertorch  bf16/torchattacks"
    )
    table = []
    for (size, batch), v in sorted(RESULTS.items()):
        r = {k: batch / s for k, s in v.items()}
        ratios = [
            r.get("advface_auto", 0) / r.get("torchattacks_style", 1),
            r.get("advface_auto", 0) / r.get("advertorch_style", 1),
            r.get("advface_bf16", 0) / r.get("torchattacks_style", 1),
        ]
        tr.write_line(
            f"{size:8}{batch:>7}"
            + "".join(f"{r.get(i, 0):>22.1f}" for i in impls)
            + "".join(f"{x:>19.2f}" for x in ratios)
        )
        table.append(
            {
                "size": size,
                "batch": batch,
                "rows_per_s": r,
                "auto_vs_torchattacks": ratios[0],
                "auto_vs_advertorch": ratios[1],
                "bf16_vs_torchattacks": ratios[2],
            }
        )
    out = Path(os.environ.get("ADVFACE_BENCH_OUT", Path(__file__).parent / "results" / "cpu_bench.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "threads": THREADS,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "rows": table,
            },
            indent=2,
        )
        + "\n"
    )
    tr.write_line(f"wrote {out}")
