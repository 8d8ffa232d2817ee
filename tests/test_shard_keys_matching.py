"""Shard keys end to end: protect rotates each row by its shard's key, the provenance names the
transform, the matcher verifies and identifies exactly as under one system-wide rotation, the
deployment refuses a gallery of another shard count, and what cannot run under shards says so."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from helpers import enrolled_people, write_key

import advface_fast as af
from advface_fast import provenance
from advface_fast.keymodes import ShardKeys
from advface_fast.match import DeploymentConfig, Matcher, open_gallery
from advface_fast.match.calibrate import calibrate_deployment
from advface_fast.match.rekey import rekey

KEY = b"shard-keys-matching-test-key-000"
SHARDS = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """30 people x 3 photos, calibrated for 8 shard keys; the gallery protected under the shard
    keys and, for comparison, under one system-wide rotation (same key, settings and ids)."""
    root = tmp_path_factory.mktemp("shards")
    encoder, emb, probes, ids = enrolled_people(root, 30)
    key = write_key(root / "k.key", KEY)
    decoder = af.load_default().shadow
    config, report = calibrate_deployment(
        emb.features, emb.labels, decoder, key=key, eps_grid=[0.01, 0.02], ids=ids, max_tar_loss=5.0,
        shards=SHARDS, log=lambda m: None,
    )  # fmt: skip
    assert config is not None, report
    config.save(root / "deployment.json")
    settings = config.run_settings()
    af.protect(root / "templates.npy", decoder, out=root / "sharded.npy", row_ids=ids, progress=False, key=key,
               **settings)  # fmt: skip
    one = {**settings, "shards": 1}
    af.protect(root / "templates.npy", decoder, out=root / "one.npy", row_ids=ids, progress=False, key=key, **one)
    return {"root": root, "config": config, "probes": probes, "key": key, "ids": ids, "decoder": decoder,
            "fp": af.encoders.loader.as_encoder(encoder).fingerprint()}  # fmt: skip


def test_each_row_is_rotated_by_its_shards_key(world):
    r = world["root"]
    sharded, one = np.load(r / "sharded.npy"), np.load(r / "one.npy")
    modes = ShardKeys(KEY, SHARDS)
    groups = modes.groups(world["ids"])
    assert len(np.unique(groups)) > 4  # 90 rows over 8 shards
    # undo each row's shard rotation and the system one: the same AdvFace templates underneath
    from advface_fast.rotation import keyed_rotation

    q = keyed_rotation(KEY, sharded.shape[1]).numpy()
    under_one = one @ q
    under_shards = np.stack(
        [sharded[i] @ modes.rotation(int(g), sharded.shape[1]).numpy() for i, g in enumerate(groups)]
    )
    assert np.allclose(under_shards, under_one, atol=1e-5)
    assert not np.allclose(sharded, one, atol=1e-2)


def test_provenance_names_the_shard_transform_and_the_deployment_records_it(world):
    rec = provenance.read(world["root"] / "sharded.npy")
    key_id = rec["protection"]["key_id"]
    assert rec["protection"]["transform"] == {"name": "shard-rotation", "key_id": key_id, "shards": SHARDS}
    assert rec["protection"]["settings"]["shards"] == SHARDS
    assert world["config"].run_settings()["shards"] == SHARDS
    # one rotation keeps the record it always had: no shards entry, the transform "rotation"
    one = provenance.read(world["root"] / "one.npy")["protection"]
    assert one["transform"]["name"] == "rotation" and "shards" not in one["settings"]


def test_the_matcher_decides_as_under_one_rotation(world):
    r, p, fp = world["root"], world["probes"], world["fp"]
    cfg = world["config"]
    sharded = Matcher(open_gallery(r / "sharded.npy"), cfg, world["key"])
    one_cfg = DeploymentConfig(**{**cfg.__dict__, "settings": {**cfg.settings, "shards": 1}})
    one = Matcher(open_gallery(r / "one.npy"), one_cfg, world["key"])
    a, b = sharded.identify(p.features, fp), one.identify(p.features, fp)
    assert [(d.accept, d.identity, d.enrolment_id) for d in a] == [(d.accept, d.identity, d.enrolment_id) for d in b]
    assert np.allclose([d.score for d in a], [d.score for d in b], atol=1e-5)
    assert sum(d.identity == lab for d, lab in zip(a, p.labels, strict=True)) >= 0.8 * len(a)
    for i in (0, 5, 11):
        for claim in (p.labels[i], p.labels[(i + 1) % len(p.labels)]):
            x, y = sharded.verify(p.features[i], claim, fp), one.verify(p.features[i], claim, fp)
            assert (x.accept, x.enrolment_id) == (y.accept, y.enrolment_id)
            assert x.score == pytest.approx(y.score, abs=1e-5)


def test_a_flat_faiss_index_under_shard_keys_is_searched_per_shard(world):
    pytest.importorskip("faiss")
    from advface_fast.deploy.vector_index import build_index, save_index

    r = world["root"]
    z = np.load(r / "sharded.npy")
    save_index(build_index(z, world["ids"], "Flat"), r / "sharded.faiss")
    provenance.write(r / "sharded.faiss", provenance.read(r / "sharded.npy"))
    m = Matcher(open_gallery(r / "sharded.faiss"), world["config"], world["key"])
    ref = Matcher(open_gallery(r / "sharded.npy"), world["config"], world["key"])
    p = world["probes"]
    assert [d.enrolment_id for d in m.identify(p.features, world["fp"])] == [
        d.enrolment_id for d in ref.identify(p.features, world["fp"])
    ]


def test_the_deployment_refuses_a_gallery_of_another_shard_count(world):
    r, cfg = world["root"], world["config"]
    with pytest.raises(ValueError, match=r"shards 1 \(deployment: 8\)"):
        Matcher(open_gallery(r / "one.npy"), cfg, world["key"])
    # a deployment file written before shards existed means one rotation
    old = DeploymentConfig(**{**cfg.__dict__, "settings": {k: v for k, v in cfg.settings.items() if k != "shards"}})
    Matcher(open_gallery(r / "one.npy"), old, world["key"])
    with pytest.raises(ValueError, match=r"shards 8 \(deployment: 1\)"):
        Matcher(open_gallery(r / "sharded.npy"), old, world["key"])


def test_settings_and_options_refuse_what_shards_cannot_do(world, tmp_path):
    with pytest.raises(ValueError, match="needs rotate=True"):
        af.RunSettings(key=KEY, shards=4)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="shards must be"):
            af.RunSettings(key=KEY, rotate=True, shards=bad)
    from advface_fast.cli.protect_options import deployment_settings

    args = argparse.Namespace(deployment=str(world["root"] / "deployment.json"), eps=None, alpha=None, shards=4)
    with pytest.raises(ValueError, match="drop --shards"):
        deployment_settings(args)


NEW_KEY = b"shard-keys-matching-test-key-two"


def _decisions(m: Matcher, p, fp) -> list[tuple]:
    return [(d.accept, d.identity, d.enrolment_id, round(d.score, 4)) for d in m.identify(p.features, fp)]


def test_rekey_under_shard_keys_moves_each_record_to_its_new_shard(world, tmp_path):
    r, p, fp, cfg = world["root"], world["probes"], world["fp"], world["config"]
    new = write_key(tmp_path / "k2", NEW_KEY)
    rec = rekey(r / "sharded.npy", tmp_path / "r.npy", world["key"], new)
    assert rec["protection"]["transform"] == {"name": "shard-rotation", "key_id": af.keys.key_id(NEW_KEY),
                                              "shards": SHARDS}  # fmt: skip
    assert rec["rekeyed_from"][0]["transform_key_id"] == af.keys.key_id(KEY)
    old_rows, new_rows, ids = np.load(r / "sharded.npy"), np.load(tmp_path / "r.npy"), world["ids"]
    assert np.array_equal(np.load(tmp_path / "r.ids.npy"), ids)
    # the records are the same templates, each under its new shard's rotation (a new partition too)
    before, after = ShardKeys(KEY, SHARDS), ShardKeys(NEW_KEY, SHARDS)
    assert not np.array_equal(before.groups(ids), after.groups(ids))
    under = before.invert(torch.from_numpy(old_rows).double(), before.groups(ids))
    expect = after.apply(under, after.groups(ids)).numpy()
    assert np.allclose(new_rows, expect, atol=1e-6) and not np.allclose(new_rows, old_rows, atol=1e-2)
    # the same decisions under the new key; the old key is refused, naming the mismatch
    m = Matcher(open_gallery(tmp_path / "r.npy"), cfg, new)
    assert _decisions(m, p, fp) == _decisions(Matcher(open_gallery(r / "sharded.npy"), cfg, world["key"]), p, fp)
    with pytest.raises(ValueError, match="is not the key of"):
        Matcher(open_gallery(tmp_path / "r.npy"), cfg, world["key"])
    with pytest.raises(ValueError, match=r"old key.*is not the key"):
        rekey(tmp_path / "r.npy", tmp_path / "r2.npy", world["key"], new)


def test_rekey_of_a_faiss_index_under_shard_keys(world, tmp_path):
    pytest.importorskip("faiss")
    from advface_fast.deploy.vector_index import build_index, save_index

    r, p, fp, cfg = world["root"], world["probes"], world["fp"], world["config"]
    save_index(build_index(np.load(r / "sharded.npy"), world["ids"], "Flat"), tmp_path / "g.faiss")
    provenance.write(tmp_path / "g.faiss", provenance.read(r / "sharded.npy"))
    new = write_key(tmp_path / "k2", NEW_KEY)
    rekey(tmp_path / "g.faiss", tmp_path / "g2.faiss", world["key"], new)
    m = Matcher(open_gallery(tmp_path / "g2.faiss"), cfg, new)
    assert _decisions(m, p, fp) == _decisions(Matcher(open_gallery(r / "sharded.npy"), cfg, world["key"]), p, fp)


def test_invert_undoes_apply_and_refuses_a_mismatch():
    modes = ShardKeys(KEY, 5)
    ids = np.arange(40, dtype=np.int64)
    z = torch.randn(40, 12, dtype=torch.float64)
    g = modes.groups(ids)
    assert torch.allclose(modes.invert(modes.apply(z, g), g), z, atol=1e-12)
    with pytest.raises(ValueError, match="N groups"):
        modes.invert(z, g[:-1])


def test_protect_without_row_ids_shards_by_position_and_the_matcher_agrees(tmp_path):
    """No ids: rows are enrolled as 0..N-1, so their shards come from those positions."""
    dec = af.load_default().shadow
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(20, 128, generator=g), dim=1).numpy()
    out = af.protect(z, dec, key=KEY, rotate=True, shards=4, progress=False, eps=0.01)
    base = af.protect(z, dec, key=KEY, rotate=False, progress=False, eps=0.01)
    modes = ShardKeys(KEY, 4)
    again = modes.apply(torch.from_numpy(base), modes.groups(np.arange(20))).numpy()
    assert np.allclose(out, again, atol=1e-5)


def test_the_service_enrols_under_shard_keys_and_decides_per_shard(tmp_path):
    """The service's protection and matching take the shards from their settings: enrolled
    records equal ``protect``'s under the same shard keys; genuine probes verify and identify."""
    pytest.importorskip("faiss")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient
    from helpers import make_pair, unit_rows

    from advface_fast.deploy.service import ServiceConfig, local_service
    from advface_fast.deploy.service.access import DEFAULT_SCOPES, ApiKey, ApiKeys, digest
    from advface_fast.match.config import SETTING_KEYS

    dim, token = 24, "shard-keys-service-test-token-0123456789"
    dec, _ = make_pair(dim=dim)
    settings = af.Protector(dec, key=KEY, progress=False, rotate=True, shards=4).settings(dim)
    DeploymentConfig(0.5, 1e-3, {k: settings[k] for k in (*SETTING_KEYS, "shards")}, None, None, None).save(
        tmp_path / "dep.json"
    )
    cfg = ServiceConfig(
        protect_kwargs={"rotate": True, "shards": 4}, gallery=str(tmp_path / "g.faiss"),
        deployment=str(tmp_path / "dep.json"), identity_budget=None, key_budget=None,
    )  # fmt: skip
    keys = ApiKeys([ApiKey("admin", DEFAULT_SCOPES, digest(token))])
    c = TestClient(local_service(dec, None, KEY, keys, cfg))
    h = {"Authorization": f"Bearer {token}"}
    z = unit_rows(12, dim, seed=1)
    labels = [f"p{i}" for i in range(12)]
    ids = list(range(200, 212))
    assert c.post("/enrol", json={"templates": z.tolist(), "labels": labels, "ids": ids}, headers=h).status_code == 200
    stored = c.app.state.core._keeper.store.gallery
    want = af.protect(z, dec, key=KEY, rotate=True, shards=4, row_ids=np.array(ids), progress=False)
    got = np.stack([stored.index.reconstruct(i) for i in ids])
    np.testing.assert_allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    assert len(np.unique(ShardKeys(KEY, 4).groups(np.array(ids)))) > 1
    probes = z + 0.05 * unit_rows(12, dim, seed=2)
    for j, p in enumerate(probes):
        v = c.post("/verify", json={"template": p.tolist(), "claim": labels[j]}, headers=h).json()
        assert v == {"decision": "accept"}
        i = c.post("/identify", json={"template": p.tolist()}, headers=h).json()
        assert i == {"decision": "match", "identity": labels[j]}


def test_index_through_the_cli_takes_the_shards_from_the_deployment(world, tmp_path, capsys):
    """``index --deployment`` of a shard-key deployment writes a sharded gallery whose decisions
    equal the library's ``.npy`` one; ``--shards`` beside ``--deployment`` is refused."""
    pytest.importorskip("faiss")
    from advface_fast.cli import main

    af.save_model(world["decoder"], tmp_path / "dec.safetensors")
    argv = ["index", str(world["root"] / "templates.npy"), str(tmp_path / "g.faiss"), "--decoder"]
    argv += [str(tmp_path / "dec.safetensors"), "--key-file", str(world["key"]), "--no-progress"]
    argv += ["--deployment", str(world["root"] / "deployment.json")]
    assert main(argv) == 0
    rec = provenance.read(tmp_path / "g.faiss")
    assert rec["protection"]["transform"]["shards"] == SHARDS
    m = Matcher(open_gallery(tmp_path / "g.faiss"), world["config"], world["key"])
    ref = Matcher(open_gallery(world["root"] / "sharded.npy"), world["config"], world["key"])
    p = world["probes"]
    assert [d.enrolment_id for d in m.identify(p.features, world["fp"])] == [
        d.enrolment_id for d in ref.identify(p.features, world["fp"])
    ]
    assert main([*argv[:2], str(tmp_path / "h.faiss"), *argv[3:], "--shards", "4"]) != 0
    assert "drop --shards" in capsys.readouterr().err
