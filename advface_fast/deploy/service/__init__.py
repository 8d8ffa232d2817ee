"""The service: protect, enrol, verify and identify over HTTP (Ray Serve + FastAPI).

- :mod:`.routes`: the HTTP API (FastAPI; ``/docs``, ``/openapi.json``) and its body limit.
- :mod:`.schemas`: typed JSON bodies; :mod:`.wire`: value checks and the bulk ``.npz`` body.
- :mod:`.protecting`: dynamic batches of protection on each replica.
- :mod:`.keeper`: the gallery, the key's transform, query budgets, the audit log (one replica).
- :mod:`.access` (API keys and scopes), :mod:`.budget`, :mod:`.audit`, :mod:`.store`.
- :mod:`.ray_app`: the Serve application, :func:`start_service`, :func:`stop_service`.
"""

from .access import ApiKeys, load_api_keys
from .budget import Budget
from .config import ServiceConfig
from .ray_app import build_app, local_service, start_service, stop_service

__all__ = [
    "ApiKeys",
    "Budget",
    "ServiceConfig",
    "build_app",
    "load_api_keys",
    "local_service",
    "start_service",
    "stop_service",
]
