"""The performance page (docs/performance.md) is generated from the committed benchmark results and must
match them (rerun ``python benchmarks/perf_report.py`` after a benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_performance_section_matches_the_results():
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "perf_report.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
