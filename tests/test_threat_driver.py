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
