"""A decision-only attack on a live matcher: accept/reject answers turned into the stored template.

Threat model: the attacker can submit probe templates (its own faces through E, or any vector it
crafts) to ``verify`` for a claimed identity and reads only the decision; it knows the threshold
``t`` the system decides at (published with the FAR, or estimated), not the key, not the score.
The matcher rotates probes with the key, so for a unit probe ``p`` the answer is
``accept = p . u > t`` with ``u = Q^T s / |s|`` the stored template with the rotation undone:
a half-space on the sphere. Three phases (after HopSkipJump, Chen et al., 2020, reduced to this
linear boundary):

1. **a foothold**: the attacker's own templates are tried until one is accepted (a false accept;
   about ``1 / FAR`` queries on average). Without one, nothing is learnt (the estimate is None).
2. **the boundary**: bisection on the great circle between the accepted probe and a rejected one
   gives ``b`` with ``b . u ~= t`` (``search_steps`` queries).
3. **the normal**: probes ``b + sigma d`` for random unit ``d``; to first order the answer is the
   sign of ``d . (u - t b)``, so the mean of ``sign * d`` estimates the direction ``n`` of
   ``u - t b``; then ``u ~= t b + sqrt(1 - t^2) n`` (``|u - t b|^2 = 1 - t^2``). Each answer is
   about one bit; ``m`` answers give ``cos(n^, n) ~ sqrt(2 m / (pi D))`` while ``m << D``.

:func:`decision_oracle` returns the estimate after each of ``checkpoints`` queries, for curves of
what an attacker holds against the number of answers (``benchmarks/service_oracle_attack.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _slerp(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return _unit((1 - w) * a + w * b)


def decision_oracle(
    ask: Callable[[np.ndarray], bool],
    own: np.ndarray,
    threshold: float,
    checkpoints: Sequence[int],
    seed: int = 0,
    sigma: float = 0.05,
    search_steps: int = 12,
) -> dict[int, np.ndarray | None]:
    """Estimates of the unrotated stored template ``(D,)`` (unit, float64) after each number of
    queries in ``checkpoints`` (None before a foothold). ``ask(probe (D,)) -> bool`` is the
    matcher's decision for the claimed identity; ``own (M, D)`` the attacker's own templates,
    tried in a random order for a foothold."""
    rng = np.random.default_rng(seed)
    own = _unit(np.asarray(own, np.float64))
    budget = max(checkpoints)
    out: dict[int, np.ndarray | None] = {}
    used = 0
    estimate: np.ndarray | None = None

    def note() -> None:
        for c in checkpoints:
            if c <= used and c not in out:
                out[c] = None if estimate is None else estimate.copy()

    accepted = rejected = None
    for i in rng.permutation(len(own)):
        if used >= budget:
            break
        ok = ask(own[i])
        used += 1
        if ok and accepted is None:
            accepted = own[i]
        elif not ok and rejected is None:
            rejected = own[i]
        note()
        if accepted is not None and rejected is not None:
            break
    if accepted is None or rejected is None:
        note()
        return {c: out.get(c) for c in checkpoints}
    lo, hi = 0.0, 1.0  # accepted at lo, rejected at hi
    while used < budget and search_steps > 0:
        mid = (lo + hi) / 2
        if ask(_slerp(accepted, rejected, mid)):
            lo = mid
        else:
            hi = mid
        used += 1
        search_steps -= 1
        note()
    b = _slerp(accepted, rejected, lo)
    estimate = b.copy()  # on the boundary: already a template at cosine ~t to u
    total = np.zeros_like(b)
    while used < budget:
        d = _unit(rng.standard_normal(b.shape))
        sign = 1.0 if ask(_unit(b + sigma * d)) else -1.0
        used += 1
        total += sign * d
        n = total - (total @ b) * b
        if np.linalg.norm(n) > 0:
            estimate = _unit(threshold * b + np.sqrt(max(0.0, 1 - threshold**2)) * _unit(n))
        note()
    note()
    return {c: out.get(c) for c in checkpoints}
