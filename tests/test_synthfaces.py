"""The synthetic face world: deterministic, batch-independent, and a real recognition task."""

from __future__ import annotations

import pytest
import torch

from advface_fast.data import SynthFaces, synth_faces
from advface_fast.metrics import genuine_impostor_pairs, pair_distances, verification_accuracy


@pytest.mark.parametrize("size", [32, 64, 112])
def test_shapes_range_and_determinism(size):
    sf = SynthFaces(size, seed=3)
    ids, var = torch.tensor([0, 5, 5, 999_999]), torch.tensor([0, 0, 7, 3])
    a = sf.render(ids, var)
    assert a.shape == (4, 3, size, size) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    assert torch.equal(a, SynthFaces(size, seed=3).render(ids, var))
    assert not torch.equal(a, SynthFaces(size, seed=4).render(ids, var))


def test_image_depends_only_on_identity_and_variation():
    sf = SynthFaces(32)
    big = sf.render(torch.arange(40) // 4, torch.arange(40) % 4)
    one = sf.render(torch.tensor([7]), torch.tensor([1]))
    assert torch.equal(one[0], big[7 * 4 + 1])
    imgs, labels = synth_faces(3, 2, id_offset=10)
    assert labels.tolist() == [10, 10, 11, 11, 12, 12]
    assert torch.equal(imgs[3], sf.render(torch.tensor([11]), torch.tensor([1]))[0])


def test_identity_is_not_trivial_in_pixels():
    """Same-person images differ in pose, light and expression: raw pixels verify poorly, while the
    shipped encoder reaches >= 95% (tests/test_defaults.py)."""
    sf = SynthFaces(32)
    ids = torch.arange(300)
    a, b = sf.render(ids, torch.zeros_like(ids)), sf.render(ids, torch.ones_like(ids))
    i, j, same = genuine_impostor_pairs(300)
    acc, _, _ = verification_accuracy(pair_distances(a.flatten(1)[i], b.flatten(1)[j]), same)
    assert acc < 0.85, acc


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 16"):
        SynthFaces(8)
    with pytest.raises(ValueError, match="one shape"):
        SynthFaces(32).render(torch.arange(3), torch.arange(2))
    with pytest.raises(ValueError, match="non-negative"):
        SynthFaces(32).render(torch.tensor([-1]), torch.tensor([0]))
