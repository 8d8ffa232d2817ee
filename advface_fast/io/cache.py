"""The cache-folder policy: where aligned faces, embeddings, trained
decoders and fetched model files are kept, and the content key that names a cached result."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path


def default_cache_dir() -> Path:
    """``$ADVFACE_CACHE``, else ``~/.cache/advface_fast``."""
    return Path(os.environ.get("ADVFACE_CACHE") or Path.home() / ".cache" / "advface_fast")


def sha256_file(path: Path) -> str:
    """The SHA-256 hex of a file's contents (read in 1 MiB blocks; no trust in its timestamps)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_key(files: Sequence[Path], settings: dict) -> str:
    """A hex key for ``files`` (their contents, in order) and ``settings``."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        h.update(sha256_file(Path(f)).encode())
    return h.hexdigest()[:32]
