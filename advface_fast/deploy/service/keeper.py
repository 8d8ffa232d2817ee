"""The matching side of the service: one owner of the gallery, the key's transform, the query
budgets and the audit log (a single Serve replica, so budgets and enrolments are global).

Every verify/identify is charged to the API key and, for verify, to the claimed identity
(:mod:`.budget`) before it is matched, and written to the audit log (:mod:`.audit`) before it is
answered. A claim nobody is enrolled under is answered ``reject`` like a wrong person (the answer
does not tell who is enrolled) and logged as ``unknown claim``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...match.config import DeploymentConfig
from ...match.matcher import Matcher
from ..postgres_table import ConcurrentRunError, TableStateError
from .audit import AuditLog
from .budget import QueryBudgets
from .config import ServiceConfig
from .store import GalleryStore, ReadOnlyGallery


class OverBudget(Exception):
    """A query refused by a budget: ``retry_after`` seconds until the next window."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"query budget spent; retry after {retry_after:.0f} s")
        self.retry_after = retry_after


class Keeper:
    """``decoder``/``encoder``/``key``/``config`` as for the service; the gallery's provenance for
    a new index comes from a :class:`~advface_fast.Protector` with the service's settings."""

    def __init__(self, decoder: Any, encoder: Any, key: bytes, config: ServiceConfig) -> None:
        from ...encoders.loader import as_encoder
        from ...models.serialization import load_model
        from ...protector import Protector

        assert config.gallery is not None and config.deployment is not None
        dec = load_model(decoder) if isinstance(decoder, str) else decoder
        prot = Protector(dec, as_encoder(encoder), key=key, progress=False, **config.protect_kwargs)
        self.deployment = DeploymentConfig.load(config.deployment)
        self.store = GalleryStore(config.gallery, prot.provenance(0, dec.in_dim), config.checkpoint_every)
        self.matcher = Matcher(self.store.gallery, self.deployment, key)
        self.budgets = QueryBudgets(config.identity_budget, config.key_budget)
        self.audit = AuditLog(config.audit_path())
        self.counts = {"enrolled": 0, "verify": 0, "identify": 0, "over_budget": 0}

    def enrol(self, ids: np.ndarray, protected: np.ndarray, labels: list[str], who: str) -> None:
        """Store protected templates (as returned by the Protector) under ``ids`` and ``labels``."""
        self.store.add(ids, protected, labels)
        self.counts["enrolled"] += len(ids)
        self.audit.write("enrol", who, ids=[int(i) for i in ids], labels=labels)

    def _charge(self, who: str, endpoint: str, claim: str | None) -> None:
        wait = self.budgets.charge(who, claim)
        if wait is not None:
            self.counts["over_budget"] += 1
            self.audit.write(endpoint, who, claim=claim, decision="refused: query budget")
            raise OverBudget(wait)

    def verify(self, probe: np.ndarray, claim: str, who: str, with_score: bool) -> dict[str, Any]:
        """``{"decision": "accept" | "reject"}`` (+ ``score``, ``threshold`` when asked)."""
        self._charge(who, "verify", claim)
        self.counts["verify"] += 1
        try:
            d = self.matcher.verify(probe, claim)
            accept, score, note = d.accept, d.score, None
        except KeyError:
            accept, score, note = False, None, "unknown claim"
        decision = "accept" if accept else "reject"
        self.audit.write("verify", who, claim=claim, decision=decision, **({"note": note} if note else {}))
        out: dict[str, Any] = {"decision": decision}
        if with_score:
            out.update(score=score, threshold=self.deployment.threshold)
        return out

    def identify(self, probe: np.ndarray, who: str, with_score: bool) -> dict[str, Any]:
        """``{"decision": "match" | "unknown", "identity": label | None}`` (+ score)."""
        self._charge(who, "identify", None)
        self.counts["identify"] += 1
        if len(self.store.gallery) == 0:
            accept, identity, score = False, None, None
        else:
            d = self.matcher.identify(probe)[0]
            accept, identity, score = d.accept, d.identity, d.score
        decision = "match" if accept else "unknown"
        self.audit.write("identify", who, decision=decision, identity=identity)
        out: dict[str, Any] = {"decision": decision, "identity": identity}
        if with_score:
            out.update(score=score, threshold=self.deployment.threshold)
        return out

    def call(self, name: str, *args: Any) -> dict[str, Any]:
        """``{"result": ...}`` of method ``name``, or ``{"status": 4xx, "error": message}`` (and
        ``retry_after``): the form answers take across the Ray handle, exceptions not pickled."""
        if name not in ("enrol", "verify", "identify", "stats"):
            return {"status": 404, "error": f"no keeper method {name}"}
        try:
            return {"result": getattr(self, name)(*args)}
        except OverBudget as exc:
            return {"status": 429, "error": str(exc), "retry_after": exc.retry_after}
        except (ReadOnlyGallery, TableStateError) as exc:
            return {"status": 409, "error": str(exc)}
        except ConcurrentRunError as exc:  # a protect-table run holds the column: try again later
            return {"status": 503, "error": str(exc), "retry_after": 60.0}
        except KeyError as exc:  # enrolment ids already taken
            return {"status": 409, "error": str(exc.args[0])}
        except ValueError as exc:
            return {"status": 400, "error": str(exc)}

    def stats(self) -> dict[str, Any]:
        g = self.store.gallery
        return {
            **self.counts,
            "gallery": g.where,
            "templates": len(g),
            "writable": self.store.writable,
            "threshold": self.deployment.threshold,
            "far": self.deployment.far,
        }

    def checkpoint(self) -> None:
        self.store.checkpoint()

    def close(self) -> None:
        self.store.checkpoint()
        self.audit.close()
