"""FAISS round trip: the index holds protect()'s rows under the gallery's ids; save and load."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_pair, unit_rows, write_key

import advface_fast as af

faiss = pytest.importorskip("faiss")

from advface_fast.deploy.vector_index import load_index, protect_into_faiss, save_index, search  # noqa: E402

KEY = b"test-key-v-0123456789abcdefghijk"


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_round_trip_equals_protect(tmp_path, factory):
    dec, _ = make_pair(dim=24)
    feats = unit_rows(300, 24, seed=1)
    ids = np.arange(1000, 1300, dtype=np.int64)[::-1].copy()
    prot = af.Protector(dec, key=KEY, progress=False)
    index = protect_into_faiss(feats, prot, ids=ids, factory=factory, chunk_rows=64, progress=False)
    assert index.ntotal == 300
    want = _unit(af.protect(feats, dec, key=KEY, row_ids=ids, progress=False))
    got = np.stack([index.reconstruct(int(i)) for i in ids])
    np.testing.assert_allclose(got, want, atol=1e-6)
    save_index(index, tmp_path / "g.faiss")
    back = load_index(tmp_path / "g.faiss")
    scores, found = search(back, want[:50], k=1)
    np.testing.assert_array_equal(found[:, 0], ids[:50])  # each stored template finds itself
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_probe_finds_its_person_and_bad_input(tmp_path):
    dec, _ = make_pair(dim=24)
    feats = unit_rows(200, 24, seed=2)
    probes = _unit(feats + 0.05 * np.random.default_rng(3).standard_normal(feats.shape).astype(np.float32))
    prot = af.Protector(dec, key=KEY, progress=False)
    np.save(tmp_path / "g.npy", feats)
    index = protect_into_faiss(tmp_path / "g.npy", prot, progress=False)  # a path: memory-mapped
    _, found = search(index, probes, k=1)
    assert (found[:, 0] == np.arange(200)).mean() > 0.9
    with pytest.raises(ValueError, match="unique"):
        protect_into_faiss(feats[:3], prot, ids=[1, 1, 2], progress=False)
    with pytest.raises(ValueError, match="24-d"):
        protect_into_faiss(unit_rows(3, 16), af.Protector(make_pair(dim=16)[0], key=KEY), index=index)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "none.faiss")


def test_cli_index(tmp_path, capsys):
    from advface_fast.cli import main

    dec, _ = make_pair(dim=24)
    feats = unit_rows(40, 24, seed=4)
    np.save(tmp_path / "g.npy", feats)
    np.save(tmp_path / "ids.npy", np.arange(7, 47, dtype=np.int64))
    af.save_model(dec, tmp_path / "dec.safetensors")
    write_key(tmp_path / "key", KEY)
    argv = ["index", str(tmp_path / "g.npy"), str(tmp_path / "g.faiss"), "--decoder", str(tmp_path / "dec.safetensors")]
    argv += ["--key-file", str(tmp_path / "key"), "--ids", str(tmp_path / "ids.npy"), "--no-progress"]
    assert main(argv) == 0
    index = load_index(tmp_path / "g.faiss")
    want = _unit(af.protect(feats, dec, key=KEY, row_ids=np.arange(7, 47), progress=False))
    np.testing.assert_allclose(index.reconstruct(9), want[2], atol=1e-6)
    assert main(argv) == 2 and "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "factory, match",
    [
        ("HNSW0", "M in 2..512"),
        ("IVF4_HNSW0,Flat", "unsupported"),
        ("RR0,Flat", "unsupported"),
        ("IVF0", "unsupported"),
        ("IVF0,Flat", "1..40 lists"),
        ("IVF64,Flat", "1..40 lists"),
        ("PCA0", "unsupported"),
        ("SQ0", "unsupported"),
        ("Pad1000000000", "unsupported"),
        ("IVF4,PQ5", "must divide"),
    ],
)
def test_factories_faiss_would_abort_on_or_make_useless_are_refused(factory, match):
    from advface_fast.deploy.vector_index import check_factory

    with pytest.raises(ValueError, match=match):
        check_factory(factory, 40, 24)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "HNSW32,Flat", "IVF4,Flat", "IVF4,SQ8", "IVF4,PQ4"])
def test_supported_factories_build_and_search(factory):
    from advface_fast.deploy.vector_index import build_index, check_factory

    z = unit_rows(400, 24, seed=2)
    check_factory(factory, 400, 24)
    index = build_index(z, np.arange(400) + 10, factory)
    _, ids = index.search(z[:5], 1)
    assert index.ntotal == 400 and ids.shape == (5, 1)


def test_an_empty_gallery_is_not_indexed():
    with pytest.raises(ValueError, match="gallery is empty"):
        protect_into_faiss(np.zeros((0, 24), np.float32), af.Protector(make_pair(dim=24)[0], progress=False))
