"""Query budgets: how many verify/identify decisions a claimed identity and an API key may get per
time window.

An attacker who can query the matcher learns about a stored template with every answer: with
scores, about D queries recover it; with accept/reject answers alone, far more (measured in
``benchmarks/service_oracle_attack.py``). A budget bounds how fast answers come. Windows are fixed
(``queries`` per ``window_s`` seconds, counted from the epoch), so a refusal can say exactly when
the next answer is available (``Retry-After``).

A budget per claimed identity also lets anyone who knows a person's enrolment name spend that
person's budget (their verifications are then refused until the window ends): a denial of service
traded for the bound on an attacker; size it above what a genuine user needs in a window.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Budget:
    """``queries`` answers per ``window_s`` seconds."""

    queries: int
    window_s: float

    def __post_init__(self) -> None:
        if isinstance(self.queries, bool) or not isinstance(self.queries, int) or self.queries < 1:
            raise ValueError(f"a budget's queries must be a positive integer, got {self.queries!r}")
        if not (isinstance(self.window_s, (int, float)) and 0 < self.window_s < math.inf):
            raise ValueError(f"a budget's window must be a positive number of seconds, got {self.window_s!r}")

    @classmethod
    def parse(cls, text: str) -> Budget | None:
        """``"20/h"``, ``"1000/d"``, ``"5/30s"``, ``"100/3600"`` (seconds); ``"none"``: no budget."""
        if text.strip().lower() == "none":
            return None
        m = re.fullmatch(r"\s*(\d{1,9})\s*/\s*(\d{0,9}(?:\.\d+)?)\s*(s|min|h|d)?\s*", text)
        if m is None or (not m[2] and not m[3]):
            raise ValueError(f"a budget is QUERIES/WINDOW such as 20/h, 1000/d, 5/30s or none; got {text!r}")
        return cls(int(m[1]), float(m[2] or 1) * _UNITS[m[3] or "s"])

    def __str__(self) -> str:
        return f"{self.queries}/{self.window_s:g}s"


class QueryBudgets:
    """Counters for budgets per claimed identity and per API key (either may be None: unbounded)."""

    def __init__(
        self, per_identity: Budget | None, per_key: Budget | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.per_identity, self.per_key, self.clock = per_identity, per_key, clock
        self._used: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, name) -> (window, used)

    def charge(self, api_key: str, identity: str | None) -> float | None:
        """Spend one query of ``api_key`` and of ``identity`` (None: identify, no claim). Returns
        None when both allow it, else the seconds until the exhausted budget's next window (and
        charges nothing)."""
        now = self.clock()
        wanted = [(("key", api_key), self.per_key)]
        if identity is not None:
            wanted.append((("identity", identity), self.per_identity))
        waits, spend = [], []
        for name, budget in wanted:
            if budget is None:
                continue
            window = int(now // budget.window_s)
            w, used = self._used.get(name, (window, 0))
            used = used if w == window else 0
            if used >= budget.queries:
                waits.append((window + 1) * budget.window_s - now)
            spend.append((name, window, used + 1))
        if waits:
            return max(waits)
        for name, window, used in spend:
            self._used[name] = (window, used)
        if len(self._used) > 1_000_000:  # forget finished windows
            self._prune(now)
        return None

    def _prune(self, now: float) -> None:
        def live(kind: str, w: int) -> bool:
            b = self.per_identity if kind == "identity" else self.per_key
            return b is not None and w == int(now // b.window_s)

        self._used = {k: v for k, v in self._used.items() if live(k[0], v[0])}
