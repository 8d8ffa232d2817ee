"""API keys and their scopes.

Clients send ``Authorization: Bearer <token>``. The service holds only SHA-256 digests of the
tokens and compares a request's digest with every known one in constant time. Keys live in a
file readable by its owner only (like ssh's ``authorized_keys``), one per line::

    # name   scopes                          digest
    gate-1   verify,identify                 sha256:4f1c...  (64 hex digits)
    hr       enrol,protect,stats             sha256:9a0b...
    audit    verify,identify,scores          sha256:...

``advface-fast api-key NAME --scopes ... --file F`` draws a token, prints it once and appends its
line. A file holding one bare token (the older form) is one key named ``default`` with
:data:`DEFAULT_SCOPES`.

Scopes: ``protect`` (POST /protect), ``enrol``, ``verify``, ``identify``, ``stats``, and
``scores``: only a key with it may ask verify/identify for similarity scores, which an
attacker can turn into the stored template with about D queries (see docs/deployment.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

SCOPES = ("protect", "enrol", "verify", "identify", "stats", "scores")
DEFAULT_SCOPES = frozenset({"protect", "enrol", "verify", "identify", "stats"})
MIN_TOKEN_CHARS = 16
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_.@-]{1,64})\s+(?P<scopes>[a-z,]+)\s+sha256:(?P<hex>[0-9a-f]{64})$")


def digest(token: str | bytes) -> bytes:
    """SHA-256 of a token (what the service keeps)."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


@dataclass(frozen=True)
class ApiKey:
    """One client key: its ``name`` (in the audit log and budgets), ``scopes`` and token digest."""

    name: str
    scopes: frozenset[str]
    digest: bytes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s for s in text.split(",") if s)
    unknown = scopes - set(SCOPES)
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {sorted(unknown) or text!r}; scopes are {', '.join(SCOPES)}")
    return scopes


class ApiKeys:
    """The keys a service accepts (:func:`load_api_keys`)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        if not keys:
            raise ValueError("the service needs at least one API key; refusing to serve without one")
        names = [k.name for k in keys]
        if len(set(names)) != len(names):
            raise ValueError("API key names must be unique")
        self.keys = keys

    def authorise(self, header: str | None) -> ApiKey | None:
        """The key whose token ``Authorization: Bearer <token>`` carries, else None; every digest
        is compared (constant time), whichever matches."""
        token = header[7:] if header and header[:7].lower() == "bearer " else ""
        d = digest(token)
        found = None
        for k in self.keys:
            if hmac.compare_digest(d, k.digest) and token:
                found = k
        return found

    def holds_secret(self, secret: bytes) -> bool:
        """Whether some key's token is ``secret`` (raw or hex): the protection key must never be
        a client's token."""
        return any(digest(s) == k.digest for k in self.keys for s in (secret, secret.hex().encode()))


def load_api_keys(path: str | os.PathLike[str]) -> ApiKeys:
    """Read an API keys file (see the module docstring); refuses one others may read."""
    from ...keys import check_key_file_mode

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"API key file not found: {p}")
    check_key_file_mode(p)  # a token others can read is a token others hold
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) == 1 and not any(c.isspace() for c in lines[0]):
        if len(lines[0]) < MIN_TOKEN_CHARS:
            raise ValueError(f"API key in {p} is shorter than {MIN_TOKEN_CHARS} characters; use a long random token")
        return ApiKeys([ApiKey("default", DEFAULT_SCOPES, digest(lines[0]))])
    keys = []
    for n, line in enumerate(lines, 1):
        m = _LINE.match(line)
        if m is None:
            raise ValueError(
                f"{p}: entry {n} is not 'NAME SCOPES sha256:<64 hex>' (make keys with advface-fast api-key)"
            )
        keys.append(ApiKey(m["name"], parse_scopes(m["scopes"]), bytes.fromhex(m["hex"])))
    return ApiKeys(keys)


def add_api_key(path: str | os.PathLike[str], name: str, scopes: frozenset[str]) -> str:
    """Draw a token, append its line to ``path`` (created 0600) and return the token (shown once)."""
    p = Path(path)
    if not _LINE.match(f"{name} x sha256:{'0' * 64}"):
        raise ValueError(f"a key name is 1-64 of letters, digits and _.@- , got {name!r}")
    if p.exists() and any(k.name == name for k in load_api_keys(p).keys):
        raise ValueError(f"{p} already has a key named {name}")
    token = secrets.token_urlsafe(32)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"{name} {','.join(s for s in SCOPES if s in scopes)} sha256:{digest(token).hex()}\n")
    return token
