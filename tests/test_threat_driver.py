"""The threat driver's mechanics on a constructed world: every defence meets every attack that runs
under it, people limits reach the world, results are keyed by the objects' names, and two attacks
of one name are refused."""

from __future__ import annotations

import pytest
import torch

from advface_fast.eval.threat.base import Knowledge
from advface_fast.eval.threat.driver import AttackRun, Defence, cross


class _Echo:
    """An attack that 'reconstructs' the stored templates themselves."""

    def __init__(self, name: str) -> None:
        self.name, self.knowledge = name, Knowledge(encoder="white-box")

    def reconstruct(self, templates: torch.Tensor) -> torch.Tensor:
        return templates


class _World:
    """Scores an attack by how many reconstructions equal the enrolled templates."""

    def __init__(self, enrolled: torch.Tensor) -> None:
        self.enrolled = enrolled
        self.calls: list[tuple[str, int | None]] = []

    def utility(self, defence: Defence) -> dict[str, float]:
        same = (defence.stored == defence.probes).all(1).float().mean()
        return {"acc": 100 * float(same), "acc_std": 0.0}

    def score(self, attack, stored, people, label):
        self.calls.append((label, people))
        n = len(stored) if people is None else people
        rec = attack.reconstruct(stored[:n])
        hit = (rec == self.enrolled[:n]).all(1).float().mean()
        return {"identity_inference_E": 100 * float(hit), "identity_inference_E2": 100 * float(hit), "people": n}


def test_cross_runs_each_attack_under_its_defences_with_its_people():
    z = torch.randn(8, 4)
    world = _World(z)
    clear = Defence("clear", z, z)
    noisy = Defence("noisy", z + 1, z)
    everywhere, limited = _Echo("echo"), _Echo("echo, 3 people, clear only")
    out = cross(world, [clear, noisy], [AttackRun(everywhere), AttackRun(limited, people=3, under=(clear,))], print)
    assert out["utility"] == {"clear": {"acc": 100.0, "acc_std": 0.0}, "noisy": {"acc": 0.0, "acc_std": 0.0}}
    assert set(out["attacks"]["clear"]) == {"echo", "echo, 3 people, clear only"}
    assert set(out["attacks"]["noisy"]) == {"echo"}  # the limited attack never ran under it
    assert out["attacks"]["clear"]["echo"]["identity_inference_E"] == 100.0
    assert out["attacks"]["noisy"]["echo"]["identity_inference_E"] == 0.0
    assert out["attacks"]["clear"]["echo, 3 people, clear only"]["people"] == 3
    assert ("echo, 3 people, clear only|clear", 3) in world.calls and len(world.calls) == 3
    assert out["knowledge"]["echo"] == Knowledge(encoder="white-box").describe()


def test_under_is_by_object_not_by_name():
    z = torch.randn(4, 2)
    first, namesake = Defence("same name", z, z), Defence("same name", z + 1, z)
    out = cross(_World(z), [namesake], [AttackRun(_Echo("a"), under=(first,))], print)
    assert out["attacks"]["same name"] == {}


def test_two_attacks_of_one_name_are_refused():
    z = torch.randn(4, 2)
    with pytest.raises(ValueError, match="share a name"):
        cross(_World(z), [Defence("d", z, z)], [AttackRun(_Echo("a")), AttackRun(_Echo("a"))], print)


def test_the_synthetic_worlds_cost_includes_the_operating_point_under_the_rotation():
    """The world's utility scores a rotated defence with its rotated probes: TAR at FAR 1e-3 equals
    the clean TAR at both thresholds (the rotation keeps every score)."""
    from types import SimpleNamespace

    import numpy as np

    from advface_fast.eval.threat.worlds import SyntheticThreatWorld
    from advface_fast.metrics.verification import genuine_impostor_pairs
    from advface_fast.rotation import rotate

    g = torch.Generator().manual_seed(0)
    people = torch.randn(200, 16, generator=g)
    enrol, probe = people + 0.3 * torch.randn(200, 16, generator=g), people + 0.3 * torch.randn(200, 16, generator=g)
    pi, pj, same = genuine_impostor_pairs(200, 0)
    world = SimpleNamespace(z_enrol=enrol, z_probe=probe, pi=pi, pj=pj, same=same)
    key = b"threat-driver-test-rotation-key0"
    rotated = Defence("rotation", rotate(enrol, key), rotate(probe, key))
    u = SyntheticThreatWorld.utility(world, rotated)
    op = u["operating_point"]["0.001"]
    assert op["refit"]["tar"] == op["at_clean_threshold"]["tar"] == pytest.approx(op["tar_clean"])
    assert np.isfinite(u["acc"]) and u["acc"] > 90


def test_the_faces_worlds_cost_scores_every_enrolled_file_against_every_probe_file():
    from types import SimpleNamespace

    import numpy as np

    from advface_fast.eval.threat.worlds import FacesThreatWorld
    from advface_fast.rotation import rotate

    g = torch.Generator().manual_seed(1)
    n = 120  # files 0..59 enrolled, 60..119 probes of the same 60 people
    people = torch.randn(60, 16, generator=g)
    z = torch.cat([people, people]) + 0.3 * torch.randn(n, 16, generator=g)
    rng = np.random.default_rng(0)
    first = np.arange(60)
    second = np.where(rng.random(60) < 0.5, first + 60, rng.permutation(60) + 60)
    protocol = SimpleNamespace(
        first=first, second=second, same=second == first + 60, fold=np.arange(60) % 10,
        person=[f"p{i % 60}" for i in range(n)],
    )  # fmt: skip
    world = SimpleNamespace(data=SimpleNamespace(protocol=protocol, z_test=z))
    key = b"threat-driver-test-rotation-key1"
    u = FacesThreatWorld.utility(world, Defence("rotation", rotate(z, key), rotate(z, key)))
    op = u["operating_point"]["0.001"]
    probes = len(np.unique(second))
    assert op is not None and u["operating_point"]["impostors"] == probes * 59  # each probe file: 1 genuine
    assert op["refit"]["tar"] == pytest.approx(op["tar_clean"]) and op["tar_clean"] > 0.9
