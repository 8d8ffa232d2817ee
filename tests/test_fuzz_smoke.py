"""A short smoke run of every fuzz target (``tests/fuzz``): a few seconds of the seeded mutation
driver each, in a subprocess with its memory bound; no input may raise anything but the reader's
documented refusal, run past the per-input timeout, or exceed the bound. The long runs are
``python tests/fuzz/campaign.py`` (committed under ``benchmarks/results/fuzz``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
from targets import TARGETS

RUN = Path(__file__).resolve().parent / "fuzz" / "run.py"


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_smoke(target, tmp_path):
    cmd = [sys.executable, str(RUN), target, "--seconds", "4", "--engine", "mutation", "--memory-mb", "3072",
           "--crashes", str(tmp_path)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert '"findings": 0' in p.stdout
