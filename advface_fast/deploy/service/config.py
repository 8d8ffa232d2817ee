"""The service's settings (:class:`ServiceConfig`), handed to every replica."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .budget import Budget

# a genuine user verifies a few times a day; an attacker needs hundreds of answers with scores and
# far more with decisions only (docs/deployment.md "Queries as an attack")
DEFAULT_IDENTITY_BUDGET = Budget(20, 3600.0)
DEFAULT_KEY_BUDGET = Budget(1000, 3600.0)


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the service.

    Protection: ``protect_kwargs`` go to :class:`~advface_fast.Protector` (eps, alpha, steps,
    start, renorm, rotate, precision, backend, seed; never ``key``); requests reaching a replica
    within ``batch_wait_s`` (up to ``max_batch_requests``) are protected by one call.

    Matching (when ``gallery`` is set): ``gallery`` is a FAISS index path (created when absent;
    enrolments go there), ``postgresql://...#table`` (a column ``protect-table`` finished; enrolments
    go there) or a ``.npy`` gallery (read-only);
    ``deployment`` the deployment configuration (threshold and settings) decisions are taken
    with; ``audit_log`` the append-only log of decisions (default ``<gallery>.audit.jsonl``);
    ``identity_budget`` and ``key_budget`` the queries a claimed identity and an API key may make
    per window (None: unbounded).
    """

    max_batch_requests: int = 64
    batch_wait_s: float = 0.005
    max_rows: int = 4096
    max_body_bytes: int = 8 << 20
    num_replicas: int = 1
    max_queued_requests: int = 256  # per replica; beyond it Serve's proxy holds and retries requests
    cpus_per_replica: float = 1.0
    torch_threads: int | None = None  # default: cpus_per_replica
    protect_kwargs: dict[str, Any] = field(default_factory=dict)
    gallery: str | None = None
    deployment: str | None = None
    audit_log: str | None = None
    identity_budget: Budget | None = DEFAULT_IDENTITY_BUDGET
    key_budget: Budget | None = DEFAULT_KEY_BUDGET
    checkpoint_every: int = 10_000

    def __post_init__(self) -> None:
        for name in (
            "max_batch_requests",
            "max_rows",
            "max_body_bytes",
            "num_replicas",
            "max_queued_requests",
            "checkpoint_every",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.batch_wait_s >= 0:
            raise ValueError(f"batch_wait_s must be >= 0, got {self.batch_wait_s!r}")
        if "key" in self.protect_kwargs or "progress" in self.protect_kwargs:
            raise ValueError("protect_kwargs must not hold key or progress (the service sets them)")
        if self.gallery is not None and self.deployment is None:
            raise ValueError("a service with a gallery needs the deployment configuration its threshold comes from")
        if self.gallery is not None and self.audit_log is None and self.gallery.startswith(("postgres", "postgresql")):
            raise ValueError("a service matching against a PostgreSQL table needs --audit-log")

    def audit_path(self) -> str | None:
        if self.gallery is None:
            return None
        return self.audit_log or self.gallery + ".audit.jsonl"

    def resolved(self, settings: dict[str, Any]) -> dict[str, Any]:
        """What ``/stats`` shows: these settings with the protection's resolved values."""
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "protect_kwargs"}
        for k in ("identity_budget", "key_budget"):
            doc[k] = str(doc[k]) if doc[k] is not None else None
        return {**doc, "protection": settings}
