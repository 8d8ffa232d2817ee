"""The append-only audit log of the service's decisions: one JSON line per verify, identify or
refusal by budget: when, which API key, the endpoint, the claimed identity, the decision and the
identity found. Never a template, a score or a token.

The file is opened ``O_APPEND`` (each line one ``write``, so concurrent writers never interleave
within a line), is created readable by its owner only, is never truncated or rewritten by the
service, and is not followed through a symlink. Lines are flushed to the disk (``fsync``) before the
decision is answered, so an answered decision is in the log after a crash.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Append decisions to ``path`` (JSON lines)."""

    def __init__(self, path: str | os.PathLike[str], fsync: bool = True) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise OSError(f"cannot open the audit log {self.path} for appending: {exc}") from exc
        self.fsync = fsync
        self._lock = threading.Lock()

    def write(self, event: str, api_key: str, **fields: Any) -> None:
        """One line: ``{"time": <UTC ISO 8601>, "event": event, "api_key": name, **fields}``."""
        doc = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, "api_key": api_key}
        doc.update(fields)
        line = (json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
