"""Build helper: put cublasLt.h (and the cuBLAS headers it includes) in a folder, from the
nvidia-cublas wheel, for machines whose CUDA toolkit has nvcc but no cuBLAS headers (the project's
CPU machines). Only headers are extracted: the CUDA loop opens libcublasLt at run time.

    python csrc/fetch_cublaslt_header.py DEST     # then ADVFACE_CUBLASLT_INCLUDE=DEST pip install ...

Exit status 0 with the headers in DEST, 1 (and a message) when the wheel cannot be had.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def main() -> int:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else ".cublas-include")
    if (dest / "cublasLt.h").is_file():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "nvidia-cublas>=12", "-d", tmp],
            capture_output=True,
            text=True,
        )
        wheels = sorted(Path(tmp).glob("nvidia_cublas-*.whl"))
        if res.returncode != 0 or not wheels:
            print(f"fetch_cublaslt_header: no nvidia-cublas wheel ({res.stderr.strip()[-300:]})", file=sys.stderr)
            return 1
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as z:
            for name in z.namelist():
                if "/include/" in name and name.endswith(".h"):
                    (dest / Path(name).name).write_bytes(z.read(name))
    ok = (dest / "cublasLt.h").is_file()
    print(f"fetch_cublaslt_header: {'wrote' if ok else 'no cublasLt.h in the wheel for'} {dest}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
