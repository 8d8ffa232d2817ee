"""Key modes: same key same records, groups partition the records, a probe matches only under its
group's matrix, the system-wide mode is the existing rotation, sharded search equals brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advface_fast.keymodes import IdentityKeys, ShardedGallery, ShardKeys, SystemKey, sharded_search
from advface_fast.rotation import rotate

KEY = b"keymodes-test-key-0123456789abcd"
OTHER = b"keymodes-test-key-other-56789abc"


def _unit(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_the_system_mode_is_the_existing_rotation():
    z = _unit(7, 16)
    mode = SystemKey(KEY)
    ids = np.arange(7)
    assert torch.allclose(mode.apply(z, mode.groups(ids)), rotate(z, KEY), atol=1e-6)


@pytest.mark.parametrize("mode", [SystemKey(KEY), ShardKeys(KEY, 8), IdentityKeys(KEY)])
def test_same_key_same_records_and_cosines_within_a_group_unchanged(mode):
    z, ids = _unit(40, 12), np.arange(1000, 1040)
    labels = [f"person-{i % 5}" for i in range(40)]
    g = mode.groups(ids, labels)
    a = mode.apply(z, g)
    again = type(mode)(KEY, 8) if isinstance(mode, ShardKeys) else type(mode)(KEY)
    assert np.array_equal(again.groups(ids, labels), g)
    assert torch.equal(again.apply(z, g), a)
    for group in np.unique(g):
        rows = torch.from_numpy(np.flatnonzero(g == group))
        assert torch.allclose(a[rows] @ a[rows].T, z[rows] @ z[rows].T, atol=1e-5)


def test_shards_partition_the_ids_evenly_and_depend_on_the_key():
    ids = np.arange(20_000)
    g = ShardKeys(KEY, 16).groups(ids)
    assert g.min() >= 0 and g.max() < 16
    counts = np.bincount(g, minlength=16)
    # a keyed hash: multinomial counts of 1,250 +- 35 (sd); 6 sd is a broken hash, not chance
    assert np.abs(counts - 1250).max() < 6 * 35, counts
    assert not np.array_equal(ShardKeys(OTHER, 16).groups(ids), g)
    assert np.array_equal(ShardKeys(KEY, 16).groups(ids[::-1]), g[::-1])  # per id, not per position


def test_a_probe_matches_only_under_its_own_groups_matrix():
    mode = ShardKeys(KEY, 4)
    z = _unit(200, 32)
    g = mode.groups(np.arange(200))
    rec = mode.apply(z, g)
    row = int(np.flatnonzero(g == 2)[0])
    own = mode.probe_for(z[row : row + 1], 2)
    assert float(own @ rec[row]) == pytest.approx(1.0, abs=1e-5)
    for other in (0, 1, 3):
        wrong = mode.probe_for(z[row : row + 1], other)
        assert abs(float(wrong @ rec[row])) < 0.7  # a random direction in 32-d: |cos| ~ 0.18 sd


def test_per_identity_keys_rotate_each_label_apart_and_need_labels():
    mode = IdentityKeys(KEY)
    z = _unit(2, 24)
    z = torch.cat([z[:1], z[:1]])  # one template enrolled under two names
    g = mode.groups(np.arange(2), ["alice", "bob"])
    rec = mode.apply(z, g)
    assert g[0] != g[1] and mode.group_of("alice") == g[0]
    assert abs(float(rec[0] @ rec[1])) < 0.7  # the same face under two identities' keys: unrelated
    with pytest.raises(ValueError, match="label"):
        mode.groups(np.arange(2))
    with pytest.raises(ValueError, match="labels"):
        mode.groups(np.arange(3), ["a", "b"])


@pytest.mark.parametrize("shards", [1, 3, 16])
def test_sharded_search_equals_brute_force_over_derotated_records(shards):
    mode = ShardKeys(KEY, shards)
    z = _unit(300, 20, seed=1)
    g = mode.groups(np.arange(300))
    rec = mode.apply(z, g)
    probes = torch.nn.functional.normalize(z[[5, 77, 150]] + 0.1 * _unit(3, 20, seed=2), dim=1)
    s, i = sharded_search(mode, rec, g, probes, k=4)
    ref_s, ref_i = (probes @ z.T).topk(4, dim=1)
    assert torch.equal(i, ref_i)
    assert torch.allclose(s, ref_s, atol=1e-5)
    assert i[:, 0].tolist() == [5, 77, 150]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="shards"):
        ShardKeys(KEY, 0)
    with pytest.raises(ValueError, match="shard 9"):
        ShardKeys(KEY, 4).rotation(9, 8)
    with pytest.raises(ValueError, match="k must"):
        sharded_search(SystemKey(KEY), _unit(3, 4), np.zeros(3), _unit(1, 4), k=4)
    with pytest.raises(ValueError, match="agree"):
        sharded_search(SystemKey(KEY), _unit(3, 4), np.zeros(2), _unit(1, 4))


def test_sharded_search_returns_rows_of_the_records_as_given():
    mode = ShardKeys(KEY, 5)
    z = _unit(120, 16, seed=3)
    g = mode.groups(np.arange(120))
    order = np.argsort(g, kind="stable")
    rec = mode.apply(z[order], g[order])
    s, i = sharded_search(mode, rec, g[order], z[[order[7], order[90]]], k=2)
    assert i[:, 0].tolist() == [7, 90]
    assert torch.allclose(s[:, 0], torch.ones(2), atol=1e-5)


def test_a_packed_gallery_never_returns_padding_and_searches_uneven_groups():
    """Groups of 1, 2 and 40 records: the padded slots of the small groups are never a match,
    even with ``k`` the whole gallery, and every real row comes back once."""
    mode = ShardKeys(KEY, 8)
    z = _unit(43, 12, seed=4)
    g = np.array([3] + [5, 5] + [1] * 40)
    packed = ShardedGallery(mode, mode.apply(z, g), g)
    assert packed.blocks.shape == (3, 40, 12) and int(packed.padding.sum()) == 3 * 40 - 43
    s, i = packed.search(z[[0, 2, 10]], k=43)
    assert all(sorted(r) == list(range(43)) for r in i.tolist())
    assert i[:, 0].tolist() == [0, 2, 10] and bool(torch.isfinite(s).all())
    ref_s, _ = (z[[0, 2, 10]] @ z.T).sort(dim=1, descending=True)
    assert torch.allclose(s, ref_s, atol=1e-5)
    with pytest.raises(ValueError, match="probes must be"):
        packed.search(_unit(1, 11))
