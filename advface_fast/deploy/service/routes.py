"""The service's HTTP API: a FastAPI app over a replica (:func:`create_app`).

=================  ===========  =========================================================
endpoint           scope        answers
=================  ===========  =========================================================
POST /protect      protect      protected templates and their ids (JSON)
POST /protect/npz  protect      the same, bulk (``application/x-npz`` each way, :mod:`.wire`)
POST /enrol        enrol        protect and store in the gallery; the ids and labels
POST /enrol/npz    enrol        the same, bulk
POST /verify       verify       ``accept`` / ``reject`` for a probe and a claimed person
POST /identify     identify     ``match`` and the person / ``unknown`` for a probe
GET  /stats        stats        counters and the resolved settings
GET  /healthz      none         ``{"status": "ok", "dim": D}``
=================  ===========  =========================================================

Scores come only with ``return_score`` and a key holding the ``scores`` scope. Refusals carry
``{"error": message}``: 400 bad input, 401 no or wrong key, 403 scope, 404/405, 408 a body slower
than 30 s, 409 id taken or
read-only gallery or table state, 413 too large, 415 content type, 429 budget (``Retry-After``), 503 no
gallery or a ``protect-table`` run holds the table (``Retry-After``).
A refused request is never batched with others.
"""

# no `from __future__ import annotations`: FastAPI reads these annotations, which name local dependencies

import asyncio
import math
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .access import ApiKey
from .schemas import (
    EnrolRequest,
    EnrolResponse,
    ErrorResponse,
    Health,
    IdentifyRequest,
    IdentifyResponse,
    ProtectRequest,
    ProtectResponse,
    VerifyRequest,
    VerifyResponse,
)
from .wire import NPZ_TYPE, RequestError, check_ids, check_labels, check_rows, read_npz, write_npz

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 403, 409, 413, 415, 429, 503)
}
_TYPES = {"float", "int", "str", "bool"}
_NPZ_BODY = {
    "requestBody": {"required": True, "content": {NPZ_TYPE: {"schema": {"type": "string", "format": "binary"}}}}
}


class BodyLimit:
    """ASGI middleware: a body larger than ``max_bytes`` is answered 413, and one that has not fully
    arrived ``timeout_s`` after the request began 408 (a client trickling bytes holds a replica's
    connection otherwise), before the app sees it."""

    def __init__(self, app: Any, max_bytes: int, on_refuse: Any = None, timeout_s: float = 30.0) -> None:
        self.app, self.max_bytes, self.on_refuse, self.timeout_s = app, max_bytes, on_refuse, timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_big = declared.isdigit() and int(declared) > self.max_bytes
        chunks, size, more = [], 0, not too_big
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while more:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                await self._refuse(408, f"the body did not arrive within {self.timeout_s:g} s", scope, receive, send)
                return
            if msg["type"] == "http.disconnect":
                return
            size += len(msg.get("body", b""))
            too_big = size > self.max_bytes
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False) and not too_big
        if too_big:
            await self._refuse(413, f"the body is larger than {self.max_bytes} bytes", scope, receive, send)
            return
        body, delivered = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, status: int, message: str, scope: dict, receive: Any, send: Any) -> None:
        if self.on_refuse is not None:
            self.on_refuse()
        await JSONResponse({"error": message}, status)(scope, receive, send)


def create_app(core: Any) -> FastAPI:
    """The API over ``core`` (a :class:`.ray_app.ServiceCore`: ``dim``, ``config``, ``api_keys``,
    ``settings``, ``stats``, ``replica``, ``await protect(rows, ids)``, ``await keeper(name, *args)``)."""
    from ... import __version__

    app = FastAPI(
        title="advface_fast service",
        version=__version__,
        description="Protect, enrol, verify and identify face templates; decisions, not scores.",
    )
    app.state.core = core

    def count_refusal() -> None:
        core.stats["refused"] += 1

    app.add_middleware(BodyLimit, max_bytes=core.config.max_body_bytes, on_refuse=count_refusal)
    bearer = HTTPBearer(auto_error=False, description="an API key (advface-fast api-key)")

    def refuse(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        count_refusal()
        return JSONResponse({"error": message}, status, headers=headers)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        return refuse(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts: list[str] = []
        for e in exc.errors():  # the field's path without pydantic's union branch names
            where = ".".join(str(x) for x in e["loc"] if not (isinstance(x, str) and ("[" in x or x in _TYPES)))
            if f"{where}: {e['msg']}" not in parts:
                parts.append(f"{where}: {e['msg']}")
        return refuse(400, "; ".join(parts[:3]))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return refuse(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    def need(scope: str):
        def check(cred: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> ApiKey:
            key = core.api_keys.authorise(f"Bearer {cred.credentials}" if cred else None)
            if key is None:
                raise StarletteHTTPException(401, "missing or wrong API key (Authorization: Bearer <key>)")
            if not key.allows(scope):
                raise StarletteHTTPException(403, f"the API key {key.name!r} lacks the scope {scope!r}")
            return key

        return check

    async def keeper(name: str, *args: Any) -> Any:
        res = await core.keeper(name, *args)
        if "status" in res:
            retry = res.get("retry_after")
            headers = {"Retry-After": str(max(1, math.ceil(retry)))} if retry is not None else None
            raise StarletteHTTPException(res["status"], res["error"], headers)
        return res["result"]

    def scored(key: ApiKey, asked: bool) -> bool:
        if asked and not key.allows("scores"):
            raise StarletteHTTPException(403, f"the API key {key.name!r} may not see scores (scope 'scores')")
        return asked

    async def protected(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        try:
            return await core.protect(rows, ids)
        except ValueError as exc:  # NonFiniteError and protect()'s checks: this request's data
            raise RequestError(400, f"these templates cannot be protected: {exc}") from None

    async def npz_body(request: Request) -> dict[str, np.ndarray]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != NPZ_TYPE:
            raise RequestError(415, f"Content-Type must be {NPZ_TYPE}, got {ctype or 'none'!r}")
        return read_npz(await request.body())

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict:
        return {"status": "ok", "dim": core.dim}

    @app.get("/stats", responses=_ERRORS)
    async def stats(key: Annotated[ApiKey, Depends(need("stats"))]) -> dict:
        out = {**core.stats, "replica": core.replica, "config": core.config.resolved(core.settings)}
        if core.has_gallery:
            out["gallery"] = await keeper("stats")
        return out

    @app.post("/protect", response_model=ProtectResponse, responses=_ERRORS)
    async def protect(body: ProtectRequest, key: Annotated[ApiKey, Depends(need("protect"))]) -> dict:
        rows = check_rows(body.templates, core.dim, core.config.max_rows)
        ids = check_ids(body.ids, len(rows))
        safe = await protected(rows, ids)
        return {"templates": safe.tolist(), "ids": ids.tolist()}

    @app.post("/protect/npz", responses=_ERRORS, openapi_extra=_NPZ_BODY, response_class=Response)
    async def protect_npz(request: Request, key: Annotated[ApiKey, Depends(need("protect"))]) -> Response:
        arrays = await npz_body(request)
        rows = check_rows(arrays["templates"], core.dim, core.config.max_rows)
        ids = check_ids(arrays.get("ids"), len(rows))
        safe = await protected(rows, ids)
        return Response(write_npz(templates=np.ascontiguousarray(safe, "<f4"), ids=ids), media_type=NPZ_TYPE)

    async def enrol_rows(rows: np.ndarray, ids_in: Any, labels_in: Any, key: ApiKey) -> dict:
        if not core.has_gallery:
            raise StarletteHTTPException(503, "this service has no gallery (serve --gallery ... --deployment ...)")
        ids = check_ids(ids_in, len(rows))
        labels = check_labels(labels_in, ids)
        safe = await protected(rows, ids)
        await keeper("enrol", ids, safe, labels, key.name)
        return {"ids": ids.tolist(), "labels": labels}

    @app.post("/enrol", response_model=EnrolResponse, responses=_ERRORS)
    async def enrol(body: EnrolRequest, key: Annotated[ApiKey, Depends(need("enrol"))]) -> dict:
        rows = check_rows(body.templates, core.dim, core.config.max_rows)
        return await enrol_rows(rows, body.ids, body.labels, key)

    @app.post("/enrol/npz", response_model=EnrolResponse, responses=_ERRORS, openapi_extra=_NPZ_BODY)
    async def enrol_npz(request: Request, key: Annotated[ApiKey, Depends(need("enrol"))]) -> dict:
        arrays = await npz_body(request)
        rows = check_rows(arrays["templates"], core.dim, core.config.max_rows)
        return await enrol_rows(rows, arrays.get("ids"), arrays.get("labels"), key)

    @app.post("/verify", response_model=VerifyResponse, response_model_exclude_unset=True, responses=_ERRORS)
    async def verify(body: VerifyRequest, key: Annotated[ApiKey, Depends(need("verify"))]) -> dict:
        probe = check_rows(body.template, core.dim, 1)
        return await keeper("verify", probe, body.claim, key.name, scored(key, body.return_score))

    @app.post("/identify", response_model=IdentifyResponse, response_model_exclude_unset=True, responses=_ERRORS)
    async def identify(body: IdentifyRequest, key: Annotated[ApiKey, Depends(need("identify"))]) -> dict:
        probe = check_rows(body.template, core.dim, 1)
        out = await keeper("identify", probe, key.name, scored(key, body.return_score))
        return out

    return app
