"""A small client of the service (:mod:`.service`), standard library only."""

from __future__ import annotations

import http.client
import io
import json
import ssl
import urllib.parse
from typing import Any

import numpy as np

from .service.wire import NPZ_TYPE, write_npz


class ServiceError(RuntimeError):
    """The service refused a request: ``status``, the service's message and ``retry_after``
    (seconds, for 429)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.retry_after = status, retry_after


class ServiceClient:
    """One keep-alive connection to ``url`` (``http://`` or ``https://host:port``); not
    thread-safe (one client per thread). ``cafile``: the CA (or self-signed certificate) to trust
    for HTTPS, beside the system's.

    Example::

        client = ServiceClient("https://gate.example:8443", api_key=token, cafile="service.crt")
        client.enrol(templates, labels=["alice", "bob"])
        client.verify(probe, "alice")                    # "accept" or "reject"
    """

    def __init__(self, url: str, api_key: str, timeout: float = 60.0, cafile: str | None = None) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"url must be http(s)://host:port, got {url!r}")
        self.https, self.host, self.timeout = u.scheme == "https", u.hostname, timeout
        self.port = u.port or (443 if self.https else 80)
        self.context = ssl.create_default_context(cafile=cafile) if self.https else None
        self.api_key = api_key
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """``(status, headers, body)`` of one request (reconnects once if the connection dropped)."""
        hdrs = {"Authorization": f"Bearer {self.api_key}", **(headers or {})}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _json(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        status, headers, body = self.request(
            "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"}
        )
        return _answer(status, headers, body)

    def protect(self, templates: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Protected templates ``(N, D)`` float32 and their ids ``(N,)`` (drawn by the service when
        not given); a bulk ``.npz`` body each way."""
        arrays = {"templates": np.ascontiguousarray(np.atleast_2d(templates), dtype="<f4")}
        if ids is not None:
            arrays["ids"] = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        status, headers, body = self.request("POST", "/protect/npz", write_npz(**arrays), {"Content-Type": NPZ_TYPE})
        if status != 200:
            _answer(status, headers, body)
        out = np.load(io.BytesIO(body), allow_pickle=False)
        return out["templates"], out["ids"]

    def enrol(self, templates: np.ndarray, labels: list[str] | None = None, ids: np.ndarray | None = None) -> list[int]:
        """Protect and store ``templates (N, D)`` under ``labels`` (the people); their enrolment ids."""
        arrays = {"templates": np.ascontiguousarray(np.atleast_2d(templates), dtype="<f4")}
        if ids is not None:
            arrays["ids"] = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        if labels is not None:
            arrays["labels"] = np.asarray(labels, dtype=str)
        status, headers, body = self.request("POST", "/enrol/npz", write_npz(**arrays), {"Content-Type": NPZ_TYPE})
        return _answer(status, headers, body)["ids"]

    def verify(self, probe: np.ndarray, claim: str, return_score: bool = False) -> dict[str, Any]:
        """``{"decision": "accept" | "reject"}`` (+ ``score``/``threshold`` for a key with scope 'scores')."""
        doc = {"template": np.asarray(probe, np.float32).ravel().tolist(), "claim": str(claim)}
        return self._json("/verify", {**doc, "return_score": return_score})

    def identify(self, probe: np.ndarray, return_score: bool = False) -> dict[str, Any]:
        """``{"decision": "match" | "unknown", "identity": label | None}``."""
        doc = {"template": np.asarray(probe, np.float32).ravel().tolist(), "return_score": return_score}
        return self._json("/identify", doc)

    def stats(self) -> dict:
        status, headers, body = self.request("GET", "/stats")
        return _answer(status, headers, body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


EnrolmentClient = ServiceClient  # the name of earlier releases


def _answer(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    if status == 200:
        return json.loads(body)
    retry = headers.get("retry-after")
    raise ServiceError(status, _message(body), float(retry) if retry and retry.isdigit() else None)


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body[:200]))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
