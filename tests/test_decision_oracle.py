"""The decision-only attack's mechanics on a constructed matcher: a half-space oracle
``accept = p . u > t`` on the unit sphere (what a rotated gallery with a cosine threshold is)."""

from __future__ import annotations

import numpy as np

from advface_fast.eval.threat.decision_oracle import decision_oracle


def _world(seed: int = 0, dim: int = 64, own: int = 3000):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(dim)
    u /= np.linalg.norm(u)
    mine = rng.standard_normal((own, dim))
    mine /= np.linalg.norm(mine, axis=1, keepdims=True)
    t = float(np.sort(mine @ u)[-3])  # three of the attacker's own faces are false accepts
    return u, mine, t


def test_estimate_converges_to_the_stored_template_with_answers():
    u, mine, t = _world()
    asked = [0]

    def ask(p: np.ndarray) -> bool:
        asked[0] += 1
        return bool(p @ u / np.linalg.norm(p) > t)

    est = decision_oracle(ask, mine, t, [50, 3000, 4000, 8000], seed=1)
    assert asked[0] == 8000  # never more queries than the largest checkpoint
    cos = {q: None if e is None else float(e @ u) for q, e in est.items()}
    assert cos[50] is None  # no foothold among 50 of 3,000 faces with 3 false accepts (p ~ 0.95)
    assert cos[3000] is not None and cos[4000] > cos[3000] - 0.02
    assert cos[8000] > 0.95 > t + 0.3  # far past the boundary the foothold sat on


def test_no_foothold_no_estimate():
    _, mine, _ = _world(seed=2)
    est = decision_oracle(lambda p: False, mine, 0.5, [100, 1000], seed=0)
    assert est == {100: None, 1000: None}
