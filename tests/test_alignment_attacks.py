"""The unpaired alignment attacks (Wasserstein-Procrustes, Gromov-Wasserstein) on constructed
clouds: Gromov-Wasserstein recovers a known rotation when the attacker's set shares the stored
points (a public set of the same people), Wasserstein-Procrustes converges from a start in its
basin and keeps the start that matches best, and neither aligns two samples of an isotropic
cloud (nothing to align by)."""

from __future__ import annotations

import pytest
import torch

from advface_fast.eval.threat.gromov_wasserstein import gromov_wasserstein
from advface_fast.eval.threat.procrustes import rotation_error
from advface_fast.eval.threat.wasserstein_procrustes import matching_cost, wasserstein_procrustes
from advface_fast.rotation import keyed_rotation

DIM = 5


def _clusters(n: int, seed: int) -> torch.Tensor:
    """``n`` points around 6 fixed, unevenly placed centres (the same centres for every seed)."""
    centres = torch.randn(6, DIM, generator=torch.Generator().manual_seed(99), dtype=torch.float64) * 3
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(0, len(centres), (n,), generator=g)
    return centres[pick] + 0.3 * torch.randn(n, DIM, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def key() -> torch.Tensor:
    return keyed_rotation(b"test-key-align-0123456789abcdefg", DIM)


def _near(q: torch.Tensor, angle: float) -> torch.Tensor:
    """``q`` turned by a fixed skew generator scaled to ``rotation_error`` about ``angle``."""
    a = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = (a - a.T) / torch.linalg.matrix_norm(a - a.T) * angle * (2 * DIM) ** 0.5
    return torch.linalg.matrix_exp(a) @ q


def _same_people(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The attacker's set holds the gallery's own points (a public set sharing its people): the
    rows shuffled, each moved by a little noise (another photo)."""
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(len(x), generator=g)] + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("shape", ["clustered", "isotropic"])
def test_gromov_wasserstein_recovers_the_rotation_from_a_set_sharing_the_points(key, shape):
    iso = torch.randn(100, DIM, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = _clusters(200, 1) if shape == "clustered" else iso
    q_hat = gromov_wasserstein(_same_people(x, 2), x @ key.T, points=200, refine_iters=5)
    assert rotation_error(q_hat, key) < 0.02  # the distance matrices alone place every point


def test_wasserstein_procrustes_converges_from_a_start_in_its_basin(key):
    own, stored = _clusters(300, 3), _clusters(300, 4) @ key.T  # other samples: no row is in both
    start = _near(key, 0.2)
    q_hat = wasserstein_procrustes(own, stored, inits=[start], restarts=0, iters=10, batch=300)
    assert rotation_error(q_hat, key) < 0.1 < rotation_error(start, key)


def test_wasserstein_procrustes_keeps_the_start_that_matches_best(key):
    own, stored = _clusters(300, 5), _clusters(300, 6) @ key.T
    far = keyed_rotation(b"test-key-far-0123456789abcdefghij", DIM)
    q_hat = wasserstein_procrustes(own, stored, inits=[far, _near(key, 0.2)], restarts=0, iters=10, batch=300)
    assert rotation_error(q_hat, key) < 0.1


def test_neither_aligns_another_sample_of_an_isotropic_cloud(key):
    g = torch.Generator().manual_seed(5)
    own = torch.randn(200, DIM, generator=g, dtype=torch.float64)
    stored = torch.randn(200, DIM, generator=g, dtype=torch.float64) @ key.T  # nothing to align by
    assert rotation_error(wasserstein_procrustes(own, stored, restarts=4, iters=5, batch=200), key) > 0.5
    assert rotation_error(gromov_wasserstein(own, stored, points=100, refine_iters=5), key) > 0.5


def test_the_matching_cost_ranks_the_true_rotation_first(key):
    own, stored = _clusters(300, 6), _clusters(300, 7) @ key.T
    other = keyed_rotation(b"test-key-other-0123456789abcdefg", DIM)
    assert matching_cost(own, stored, key, 300, 0) < 0.5 * matching_cost(own, stored, other, 300, 0)


def test_a_start_at_the_truth_stays_there(key):
    own, stored = _clusters(300, 8), _clusters(300, 9) @ key.T
    assert rotation_error(wasserstein_procrustes(own, stored, inits=[key], restarts=0, iters=10), key) < 0.05


@pytest.mark.parametrize("attack", [wasserstein_procrustes, gromov_wasserstein])
def test_bad_inputs_are_refused(attack):
    with pytest.raises(ValueError, match="must be"):
        attack(torch.zeros(10, 4), torch.zeros(10, 5))
    with pytest.raises(ValueError, match="two rows"):
        attack(torch.zeros(1, 4), torch.zeros(10, 4))


def test_wasserstein_procrustes_needs_a_start():
    with pytest.raises(ValueError, match="start"):
        wasserstein_procrustes(torch.randn(10, 4), torch.randn(10, 4), restarts=0)
