"""A small client of the enrolment service (:mod:`.service`), standard library only."""

from __future__ import annotations

import http.client
import io
import json
import urllib.parse

import numpy as np

from .http_codec import IDS_HEADER, NPY_TYPE


class ServiceError(RuntimeError):
    """The service refused a request: ``status`` and the service's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class EnrolmentClient:
    """One keep-alive connection to ``url`` (``http://host:port``); not thread-safe (one client per thread).

    Example::

        client = EnrolmentClient("http://127.0.0.1:8000", api_key=open("api.key").read().strip())
        safe, ids = client.protect(template)          # (D,) or (N, D) float32
    """

    def __init__(self, url: str, api_key: str, timeout: float = 60.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"url must be http://host:port, got {url!r}")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.api_key = api_key
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """``(status, headers, body)`` of one request (reconnects once if the connection dropped)."""
        hdrs = {"Authorization": f"Bearer {self.api_key}", **(headers or {})}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=hdrs)
                resp = self._conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def protect(self, templates: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Protected templates ``(N, D)`` float32 and their ids ``(N,)`` (drawn by the service when
        not given); an ``.npy`` body each way."""
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(templates, dtype="<f4"), allow_pickle=False)
        headers = {"Content-Type": NPY_TYPE}
        if ids is not None:
            headers[IDS_HEADER] = ",".join(str(int(i)) for i in np.atleast_1d(ids))
        status, rh, body = self.request("POST", "/protect", buf.getvalue(), headers)
        if status != 200:
            raise ServiceError(status, _message(body))
        rows = np.load(io.BytesIO(body), allow_pickle=False)
        return rows, np.array([int(t) for t in rh[IDS_HEADER].split(",")], dtype=np.int64)

    def stats(self) -> dict:
        status, _, body = self.request("GET", "/stats")
        if status != 200:
            raise ServiceError(status, _message(body))
        return json.loads(body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", body[:200]))
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")
