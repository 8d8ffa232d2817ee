"""Secret keys: the key material behind the defender's randomness and the keyed rotation.

AdvFace and this package are public, and so is anything derived from a default seed: an attacker
can rerun ``protect`` on their own faces with the same settings and learn to undo it. A secret
key changes what only the defender can compute:

- the random start: with ``key=``, row ``i``'s noise is keyed by ``BLAKE2b(key, i)`` (64 bits of a
  keyed hash per row), so the noise of one row says nothing about another's, nor about the key;
- the rotation (``rotate=True``): stored templates are ``Q z`` for a secret orthogonal ``Q``
  drawn from the key (Haar-distributed, from 256 bits of key material). Probes are rotated with
  the same key at match time (:func:`~advface_fast.rotation.rotate`); cosine similarity, hence verification, is
  unchanged by construction. Templates of one person under two keys do not match
  (unlinkability), and re-keying ``Q2 Q1^T (Q1 z) = Q2 z`` needs no re-enrolment
  (renewability). The rotation protects only while the key is not stolen with the database,
  and an attacker holding ``n >= D`` pairs (clean template, stored template) of their own faces
  can solve for ``Q`` (orthogonal Procrustes): keep the key out of the database and out of
  reach of enrolment-time insiders.

A key is 32 random bytes; :func:`generate_key` writes one as hex to a file readable only by its
owner. Nothing here stores or logs the key: run manifests record :func:`key_id`, a keyed hash
that identifies it without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np

KEY_BYTES = 32
MAX_KEY_BYTES = 1024  # a larger "key file" is something else (a model, a log)
# 16 random bytes have fewer than 8 distinct values with probability ~1e-12; zeros, repeated
# characters and short passphrases ("passwordpassword": 7) fall below it
MIN_DISTINCT_BYTES = 8
_MASK63 = (1 << 63) - 1

KeyLike = bytes | str | os.PathLike


def generate_key(path: str | os.PathLike[str]) -> Path:
    """Write a new random key (32 bytes, hex) to ``path``, mode 0600; refuses to overwrite."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(KEY_BYTES) + "\n")
    return path


def check_key_file_mode(path: Path) -> None:
    """Refuse a key file that its group or others may read or write (as ssh refuses such a private
    key): the key keys the noise and the rotation of every stored template."""
    if os.name != "posix":
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(
            f"key file {path} has mode {mode:04o}: it is readable or writable by group or others, so the secret that "
            f"keys the gallery's protection may have leaked; run `chmod 600 {path}` "
            "(and rekey if others may have read it)"
        )


def load_key(key: KeyLike) -> bytes:
    """Key material from ``bytes`` (at least 16) or a key file as :func:`generate_key` writes it
    (one line of an even number of hex digits, mode 0600).

    A key file readable or writable by group or others is refused
    (:class:`PermissionError`, with the ``chmod`` that fixes it), and so is a file that is not
    exactly hex: a missing digit, a ``0x`` prefix or a comment would otherwise silently become
    another key, one that cannot reproduce the gallery. Raw binary key files are accepted when
    they are not text at all (at least 16 bytes)."""
    if isinstance(key, (bytes, bytearray)):
        raw = bytes(key)
    elif isinstance(key, (str, os.PathLike)):
        path = Path(key)
        if not path.is_file():
            raise FileNotFoundError(f"key file not found: {path} (create one with `advface-fast keygen {path}`)")
        check_key_file_mode(path)
        data = path.read_bytes()
        raw = _parse_key_file(path, data)
    else:
        raise TypeError(f"key must be bytes or a key file path, got {type(key).__name__}")
    if len(raw) < 16:
        raise ValueError(f"a key needs at least 16 bytes of material, got {len(raw)}")
    if len(raw) > MAX_KEY_BYTES:
        raise ValueError(
            f"{len(raw)} bytes of key material: a key is 16 to {MAX_KEY_BYTES} bytes (is this a key file? "
            "`advface-fast keygen` writes one)"
        )
    if len(set(raw)) < MIN_DISTINCT_BYTES:
        raise ValueError(
            f"the key has only {len(set(raw))} distinct byte values (all zeros, a repeated character, a short "
            "passphrase?): not random key material; make one with `advface-fast keygen`"
        )
    return raw


def _parse_key_file(path: Path, data: bytes) -> bytes:
    """Hex text (surrounding whitespace ignored) or raw binary; text that is not exactly hex is refused."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return data  # binary key material
    if not all(c.isprintable() or c in "\t\n\r" for c in text):
        return data  # control bytes: binary key material that happens to be ASCII
    t = text.strip()
    if t and all(c in "0123456789abcdefABCDEF" for c in t) and len(t) % 2 == 0:
        return bytes.fromhex(t)
    raise ValueError(
        f"key file {path} is text but not a hex key (one line of an even number of hex digits, no '0x', no "
        f"comments, as `advface-fast keygen` writes): reading it otherwise would silently give another key"
    )


def derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"advface_fast/" + purpose, hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A public identifier of a key (a keyed hash; it does not reveal the key)."""
    return derive(key, b"key-id").hex()[:16]


def keyed_digests(key: bytes, purpose: bytes, values: list[bytes]) -> list[int]:
    """The 64-bit BLAKE2b digests (little-endian ints) of ``values`` keyed by ``derive(key, purpose)``."""
    k = derive(key, purpose)
    return [int.from_bytes(hashlib.blake2b(v, key=k, digest_size=8).digest(), "little") for v in values]


def id_bytes(ids: np.ndarray) -> list[bytes]:
    """Each int64 id as the 8 little-endian bytes that are hashed."""
    return [int(i).to_bytes(8, "little", signed=True) for i in np.asarray(ids, dtype=np.int64).tolist()]


def keyed_row_ids(key: bytes, ids: np.ndarray) -> np.ndarray:
    """Row ids -> 63-bit keyed hashes (the counters of the random start's noise)."""
    return np.array([h & _MASK63 for h in keyed_digests(key, b"random-start", id_bytes(ids))], dtype=np.int64)
