"""Every fuzz target for ``--seconds`` each (atheris when installed), one summary:
``python tests/fuzz/campaign.py --seconds 120 --out benchmarks/results/fuzz``.

Writes ``summary.json`` (per target: engine, inputs executed, coverage, findings) and each run's
log tail; exits 1 when any target had a finding (its input is in ``--out/findings``)."""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import TARGETS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--engine", default="auto", choices=["auto", "atheris", "mutation"])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Path(__file__).resolve().parent / "run.py"
    summary = {"command": "python " + " ".join(sys.argv), "python": platform.python_version(), "targets": {}}
    failed = False
    for name in TARGETS:
        t0 = time.time()
        cmd = [sys.executable, str(runner), name, "--seconds", str(args.seconds), "--engine", args.engine,
               "--crashes", str(out / "findings")]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True)
        text = p.stdout + p.stderr
        (out / f"{name}.log").write_text("\n".join(text.splitlines()[-40:]) + "\n")
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", text) or re.findall(r'"inputs": (\d+)', text)
        cov = re.findall(r"cov: (\d+)", text)
        summary["targets"][name] = {
            "engine": "atheris" if "libFuzzer" in text else "mutation",
            "inputs": int(runs[-1]) if runs else None,
            "coverage_edges": int(cov[-1]) if cov else None,
            "seconds": round(time.time() - t0, 1),
            "exit": p.returncode,
            "findings": 0 if p.returncode == 0 else 1,
        }
        failed |= p.returncode != 0
        print(name, summary["targets"][name], flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
