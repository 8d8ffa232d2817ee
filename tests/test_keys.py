"""The defender's secret key: keyed random start, keyed rotation, key files, and what runs record."""

from __future__ import annotations

import stat
import warnings

import numpy as np
import pytest
import torch

import advface_fast as af
from advface_fast.errors import PublicRandomnessWarning, SharedNoiseWarning
from advface_fast.keys import generate_key, key_id, keyed_row_ids, load_key
from advface_fast.rotation import keyed_rotation, rotate

K1, K2 = b"test-key-k-0123456789abcdefghijk", b"test-key-q-0123456789abcdefghijk"


@pytest.fixture
def setup():
    torch.manual_seed(0)
    dec = af.MLPDecoder(24, [32], (3, 4, 4))
    z = torch.nn.functional.normalize(torch.randn(9, 24), dim=1)
    return dec, z


def _p(z, dec, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PublicRandomnessWarning)
        return af.protect(z, dec, eps=0.05, alpha=0.01, steps=3, progress=False, backend="torch", **kw)


def test_same_key_same_result_other_key_other_result(setup):
    dec, z = setup
    a, b = _p(z, dec, key=K1), _p(z, dec, key=K1)
    assert torch.equal(a, b)
    c, public = _p(z, dec, key=K2), _p(z, dec)
    assert (a - c).abs().max() > 1e-3 and (a - public).abs().max() > 1e-3
    # a single-template call no longer gets the same noise for every template: its row id is keyed
    one = torch.stack([_p(z[i : i + 1], dec, key=K1, row_ids=[i])[0] for i in range(3)])
    torch.testing.assert_close(one, a[:3])


def test_keyed_noise_is_per_row_and_not_the_public_one():
    ids = np.arange(1000)
    h1, h2 = keyed_row_ids(K1, ids), keyed_row_ids(K2, ids)
    assert len(set(h1.tolist())) == 1000 and (h1 >= 0).all()
    assert not np.intersect1d(h1, h2).size and not np.intersect1d(h1, ids).size


def test_no_key_warns_for_the_random_start(setup):
    dec, z = setup
    with pytest.warns(PublicRandomnessWarning, match="public seed"):
        af.protect(z, dec, progress=False, backend="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PublicRandomnessWarning)
        af.protect(z, dec, key=K1, progress=False, backend="torch")
        af.protect(z, dec, start="original", progress=False, backend="torch")


def test_one_template_without_row_ids_warns(setup):
    dec, z = setup
    with pytest.warns(SharedNoiseWarning, match="row_ids"):
        a = af.protect(z[:1], dec, key=K1, progress=False, backend="torch")
    with pytest.warns(SharedNoiseWarning):
        b = af.protect(z[1:2], dec, key=K1, progress=False, backend="torch")
    # the warning is true: both calls started from the same noise (row 0's) ...
    c = af.protect(z[1:2], dec, key=K1, row_ids=[0], progress=False, backend="torch")
    torch.testing.assert_close(b, c)
    with warnings.catch_warnings():  # ... and an id, a gallery or a deterministic start is silent
        warnings.simplefilter("error", SharedNoiseWarning)
        d = af.protect(z[1:2], dec, key=K1, row_ids=[7], progress=False, backend="torch")
        af.protect(z[:2], dec, key=K1, progress=False, backend="torch")
        af.protect(z[:1], dec, start="original", progress=False, backend="torch")
    assert not torch.allclose(d, c) and not torch.allclose(a, z[:1])


def test_rotation_keeps_verification_and_unlinks_keys(setup):
    dec, z = setup
    probes = torch.nn.functional.normalize(z + 0.05 * torch.randn_like(z), dim=1)
    stored = _p(z, dec, key=K1, rotate=True)
    plain = _p(z, dec, key=K1)
    torch.testing.assert_close(stored, rotate(plain, K1))
    cos = torch.nn.functional.cosine_similarity
    # matching in the rotated space gives the same scores as in the original one
    torch.testing.assert_close(cos(stored, rotate(probes, K1)), cos(plain, probes), atol=1e-6, rtol=0)
    # one person under two keys: the scores look like impostors', not like the genuine ones
    cross = cos(rotate(z, K1), rotate(z, K2))
    assert cross.abs().max() < 0.8 and cos(plain, probes).min() > 0.5
    # renewability: Q2 Q1^T applied to stored templates re-keys without the originals
    q1, q2 = keyed_rotation(K1, 24).float(), keyed_rotation(K2, 24).float()
    torch.testing.assert_close(stored @ (q2 @ q1.T).T, rotate(plain, K2), atol=1e-5, rtol=0)
    q = keyed_rotation(K1, 24)
    torch.testing.assert_close(q @ q.T, torch.eye(24, dtype=torch.float64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="needs key"):
        af.protect(z, dec, rotate=True, start="original", progress=False)
    np_out = rotate(z.numpy(), K1)
    assert isinstance(np_out, np.ndarray) and np_out.dtype == np.float32


def test_key_files(tmp_path):
    path = generate_key(tmp_path / "k.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    k = load_key(path)
    assert len(k) == 32 and load_key(k) == k
    with pytest.raises(FileExistsError):
        generate_key(path)
    (tmp_path / "short").write_bytes(b"abcd")
    (tmp_path / "short").chmod(0o600)
    with pytest.raises(ValueError, match="16 bytes"):
        load_key(tmp_path / "short")
    with pytest.raises(FileNotFoundError, match="keygen"):
        load_key(tmp_path / "none")
    with pytest.raises(TypeError):
        load_key(123)
    assert key_id(k) != key_id(K1) and k.hex() not in key_id(k)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_key_file_others_may_read_is_refused_with_the_fix(tmp_path, mode):
    path = generate_key(tmp_path / "k.key")
    path.chmod(mode)
    with pytest.raises(PermissionError, match=f"{mode:04o}.*chmod 600"):
        load_key(path)
    path.chmod(0o400)  # read-only for its owner is fine
    assert len(load_key(path)) == 32


@pytest.mark.parametrize(
    "text",
    ["0x" + "ab" * 32, "ab" * 32 + "c", "# my key\n" + "ab" * 32, "ab" * 16 + " " + "ab" * 16, "zz" * 32],
)
def test_a_key_file_that_is_almost_hex_is_refused_not_read_as_another_key(tmp_path, text):
    path = tmp_path / "k.key"
    path.write_text(text + "\n")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="not a hex key"):
        load_key(path)


def test_binary_and_hex_key_files_load(tmp_path):
    hexfile, binfile = tmp_path / "h.key", tmp_path / "b.key"
    hexfile.write_text("  " + "0123456789ABCDEF" * 3 + "\n\n")
    binfile.write_bytes(bytes(range(256))[::7])
    for p in (hexfile, binfile):
        p.chmod(0o600)
    assert load_key(hexfile) == bytes.fromhex("0123456789abcdef" * 3)
    assert load_key(binfile) == bytes(range(256))[::7]


def test_runs_record_a_key_id_not_the_key(tmp_path, setup):
    from advface_fast.io.arrays import RowSource

    dec, z = setup
    np.save(tmp_path / "g.npy", z.numpy())
    _p(str(tmp_path / "g.npy"), dec, key=K1, out=tmp_path / "o.npy")
    for f in tmp_path.iterdir():  # nothing written holds the key
        if f.is_file():
            data = f.read_bytes()
            assert K1 not in data and K1.hex().encode() not in data
    src = RowSource(z, "features", ndim=2)
    ids = {}
    for name, key in (("k1", K1), ("k2", K2)):
        p = af.Protector(dec, key=key, progress=False)
        ids[name] = p._run_id(src, None, "torch", torch.float32, None)
    assert ids["k1"]["key"] == key_id(K1) != ids["k2"]["key"]  # so a resume under another key is refused


def test_cli_keygen_protect_with_key_and_rotate_probes(tmp_path, setup):
    from advface_fast.cli import main

    dec, z = setup
    af.save_model(dec, tmp_path / "d.safetensors")
    np.save(tmp_path / "g.npy", z.numpy())
    key = tmp_path / "k.key"
    assert main(["keygen", str(key)]) == 0
    assert main(["keygen", str(key)]) == 2  # refuses to overwrite a key
    base = ["protect", str(tmp_path / "g.npy"), "--decoder", str(tmp_path / "d.safetensors"), "--no-progress"]
    base += ["--eps", "0.05", "--alpha", "0.01", "--steps", "3", "--backend", "torch", "--key-file", str(key)]
    assert main([*base[:2], str(tmp_path / "p.npy"), *base[2:]]) == 0
    assert main([*base[:2], str(tmp_path / "r.npy"), *base[2:], "--rotate"]) == 0
    plain, rotated = np.load(tmp_path / "p.npy"), np.load(tmp_path / "r.npy")
    np.testing.assert_allclose(plain, _p(z, dec, key=load_key(key)).numpy(), atol=1e-6)
    assert main(["rotate", str(tmp_path / "p.npy"), str(tmp_path / "pr.npy"), "--key-file", str(key)]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "pr.npy"), rotated, atol=1e-6)
    assert main(["rotate", str(tmp_path / "p.npy"), str(tmp_path / "pr.npy"), "--key-file", str(key)]) == 2


@pytest.mark.parametrize(
    "material, why",
    [
        (bytes(32), "distinct byte values"),
        (b"a" * 16, "distinct byte values"),
        (b"passwordpassword", "distinct byte values"),
        (bytes(range(256)) * 8, "16 to 1024 bytes"),
    ],
)
def test_weak_or_non_key_material_is_refused(material, why):
    with pytest.raises(ValueError, match=why):
        load_key(material)


def test_rotate_refuses_features_it_would_overflow():
    from advface_fast.rotation import rotate

    z = np.full((2, 8), 3.0e38, dtype=np.float32)
    with pytest.raises(ValueError, match="overflow"):
        rotate(z, K1)
