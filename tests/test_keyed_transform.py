"""KeyedTransform: the one object that turns templates into records (protect) and probes into the
records' space (match), for the three transforms a gallery can be under."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advface_fast.keymodes import KeyedTransform, ShardKeys, transform_entry
from advface_fast.keys import key_id
from advface_fast.rotation import keyed_rotation

KEY = b"test-key-transform-0123456789abc"
OTHER = b"test-key-transform-other-456789a"


class _Gallery:
    """The part of a protected gallery the transform uses: records by enrolment id."""

    def __init__(self, records: np.ndarray, ids: np.ndarray) -> None:
        self.records, self.ids, self.dim = records.astype(np.float32), ids, records.shape[1]
        self._row = {int(i): r for r, i in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, probe: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.records[[self._row[int(i)] for i in ids]] @ probe

    def search(self, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = probes @ self.records.T
        top = np.argsort(-s, axis=1)[:, :k]
        return np.take_along_axis(s, top, 1), self.ids[top]

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        return self.records, self.ids


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize(("rotate", "shards"), [(False, 1), (True, 1), (True, 8)])
def test_the_provenance_entry_names_the_transform_and_reads_back(rotate, shards):
    t = KeyedTransform(KEY if rotate else None, rotate, shards)
    back = KeyedTransform.from_entry(t.entry(), KEY)
    assert (back.name, back.rotate, back.shards) == (t.name, rotate, shards)
    assert t.entry() == transform_entry(key_id(KEY) if rotate else None, rotate, shards)
    assert t.name == ["none", "rotation", "shard-rotation"][int(rotate) + int(shards > 1)]


def test_records_are_the_system_rotation_in_the_templates_dtype_bit_for_bit():
    z = _unit(37, 24, 0)
    t = KeyedTransform(KEY, True)
    assert torch.equal(t.records(z), z @ keyed_rotation(KEY, 24).float().T)
    assert t.groups(np.arange(37)) is None
    assert KeyedTransform(None, False).records(z) is z


def test_records_under_shard_keys_are_each_rows_shard_rotation():
    z, ids = _unit(50, 16, 1), np.arange(100, 150)
    t = KeyedTransform(KEY, True, 4)
    groups = t.groups(ids)
    assert torch.equal(t.records(z, groups), ShardKeys(KEY, 4).apply(z, groups))
    with pytest.raises(ValueError, match="shard"):
        t.records(z)


@pytest.mark.parametrize("shards", [1, 5])
def test_probe_scores_and_search_equal_the_clean_cosines(shards):
    z, ids = _unit(60, 16, 2), np.arange(1000, 1060)
    probes = torch.nn.functional.normalize(z[:7] + 0.3 * _unit(7, 16, 3), dim=1)
    t = KeyedTransform(KEY, True, shards)
    gallery = _Gallery(t.records(z, t.groups(ids)).numpy(), ids)
    p = t.probes(probes.numpy())
    clean = (probes @ z.T).numpy()  # what an unkeyed system would score
    pick = ids[[3, 10, 59]]
    np.testing.assert_allclose(t.scores(gallery, p[0], pick), clean[0, [3, 10, 59]], atol=1e-5)
    s, found = t.search(gallery, p, 2)
    order = np.argsort(-clean, axis=1)[:, :2]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(s, np.take_along_axis(clean, order, 1), atol=1e-5)


def test_a_probe_left_unrotated_matches_nobody_under_the_system_key():
    z, ids = _unit(40, 32, 4), np.arange(40)
    t = KeyedTransform(KEY, True)
    gallery = _Gallery(t.records(z).numpy(), ids)
    assert float(t.scores(gallery, t.probes(z[:1].numpy())[0], ids[:1])[0]) > 0.999
    assert float(gallery.scores(z[0].numpy(), ids[:1])[0]) < 0.9  # the forgotten rotation


def test_from_entry_refuses_what_it_cannot_match():
    entry = KeyedTransform(KEY, True, 3).entry()
    with pytest.raises(ValueError, match="needs that key"):
        KeyedTransform.from_entry(entry, None, "g.npy")
    with pytest.raises(ValueError, match=r"is not the key of g\.npy"):
        KeyedTransform.from_entry(entry, OTHER, "g.npy")
    with pytest.raises(ValueError, match="unknown transform 'lattice'"):
        KeyedTransform.from_entry({"name": "lattice"}, KEY, "g.npy")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="needs the key"):
        KeyedTransform(None, True)
    with pytest.raises(ValueError, match="needs the rotation"):
        KeyedTransform(KEY, False, 4)
    with pytest.raises(ValueError, match="positive integer"):
        KeyedTransform(KEY, True, 0)
