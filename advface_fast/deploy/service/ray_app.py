"""The service as a Ray Serve application: a FastAPI ingress (:mod:`.routes`) on ``num_replicas``
protecting replicas, and, with a gallery, one keeper replica (:mod:`.keeper`) that owns the gallery,
the budgets and the audit log. :func:`start_service` starts Ray, Serve's HTTP proxy (HTTPS with
a certificate) and the application.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...optional import import_optional
from .access import ApiKeys
from .config import ServiceConfig
from .keeper import Keeper
from .protecting import Protecting


class ServiceCore(Protecting):
    """What the routes need: the protecting replica, the API keys and the way to the keeper (a
    local :class:`Keeper`, a Serve handle to one, or None without a gallery)."""

    def __init__(
        self, decoder: Any, encoder: Any, key: bytes, api_keys: ApiKeys, config: ServiceConfig, keeper: Any = None
    ) -> None:
        super().__init__(decoder, encoder, key, config)
        self.api_keys, self._keeper = api_keys, keeper
        self.has_gallery = keeper is not None

    async def keeper(self, name: str, *args: Any) -> dict[str, Any]:
        if isinstance(self._keeper, Keeper):
            return self._keeper.call(name, *args)
        return await self._keeper.call.remote(name, *args)


def local_service(decoder: Any, encoder: Any, key: bytes, api_keys: ApiKeys, config: ServiceConfig) -> Any:
    """The FastAPI app of one in-process replica, without Ray (tests, a single-process server)."""
    from .routes import create_app

    keeper = Keeper(decoder, encoder, key, config) if config.gallery else None
    return create_app(ServiceCore(decoder, encoder, key, api_keys, config, keeper))


def build_app(decoder: Any, encoder: Any, key: bytes, api_keys: ApiKeys, config: ServiceConfig) -> Any:
    """The Serve application (``serve.run(app)``). ``decoder``: an ``nn.Module`` or a model path
    readable by every replica; ``encoder``: what :func:`~advface_fast.encoders.loader.as_encoder`
    takes or None; ``key``: the defender's key bytes; ``api_keys``: the clients' keys (digests
    only)."""
    serve = import_optional("ray.serve", "the service (pip install 'advface_fast[serve]')")
    from .routes import create_app

    if api_keys.holds_secret(key):
        raise ValueError(
            "an API key is the protection key: every client would hold the secret that keys the gallery's "
            "noise and rotation; give clients their own tokens"
        )

    class _Keeper(Keeper):
        def __del__(self) -> None:  # Serve's graceful shutdown: checkpoint the gallery
            self.close()

    keeper = None
    if config.gallery:
        keeper = serve.deployment(
            _Keeper, name="AdvFaceGallery", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024
        ).bind(decoder, encoder, key, config)

    class _Replica(ServiceCore):
        @serve.batch(max_batch_size=config.max_batch_requests, batch_wait_timeout_s=config.batch_wait_s)
        async def _protect_batch(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[Any]:  # type: ignore[override]
            return await self._protect_batch_impl(items)

        def __serve_build_asgi_app__(self) -> Any:
            return create_app(self)

    _Replica.__name__ = _Replica.__qualname__ = "AdvFaceService"
    deployment = serve.deployment(
        serve.ingress()(_Replica),
        name="AdvFaceService",
        num_replicas=config.num_replicas,
        ray_actor_options={"num_cpus": config.cpus_per_replica},
        max_ongoing_requests=max(config.max_queued_requests, config.max_batch_requests),
    )
    return deployment.bind(decoder, encoder, key, api_keys, config, keeper)


def start_service(
    decoder: Any,
    encoder: Any,
    key: bytes,
    api_keys: ApiKeys,
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> str:
    """Start Ray (``address``, else ``$RAY_ADDRESS``, else a local instance), Serve's HTTP proxy on
    ``host:port`` (HTTPS with ``ssl_certfile`` and ``ssl_keyfile``) and the application; returns its
    URL once every replica is up. Stop with :func:`stop_service`."""
    ray = import_optional("ray", "the service")
    serve = import_optional("ray.serve", "the service (pip install 'advface_fast[serve]')")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ValueError("HTTPS needs both a certificate (--ssl-certfile) and its key (--ssl-keyfile)")
    for f in (ssl_certfile, ssl_keyfile):
        if f is not None and not os.path.isfile(f):
            raise FileNotFoundError(f"TLS file not found: {f}")
    app = build_app(decoder, encoder, key, api_keys, config)
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False)
    tighten_ray_token()
    # per-request access logs cost the proxy and the replica CPU on every template: warnings only
    quiet = {"enable_access_log": False, "log_level": "WARNING"}
    http = {"host": host, "port": int(port)}
    if ssl_certfile:
        http.update(ssl_certfile=os.path.abspath(ssl_certfile), ssl_keyfile=os.path.abspath(ssl_keyfile))
    serve.start(http_options=http, logging_config=quiet)
    serve.run(app, name="advface", route_prefix="/", logging_config=quiet)
    return f"{'https' if ssl_certfile else 'http'}://{host}:{int(port)}"


def tighten_ray_token(home: str | os.PathLike[str] | None = None) -> bool:
    """Make Ray's cluster token (``~/.ray/auth_token``, written 0644 by Ray) readable by its owner
    only, as the package keeps its own key files; True when its mode was changed."""
    from pathlib import Path

    token = Path(home if home is not None else Path.home()) / ".ray" / "auth_token"
    if token.is_file() and not token.is_symlink() and token.stat().st_mode & 0o077:
        token.chmod(0o600)
        return True
    return False


def stop_service() -> None:
    """Shut the application, Serve and the Ray instance this process started down."""
    ray = import_optional("ray", "the service")
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
