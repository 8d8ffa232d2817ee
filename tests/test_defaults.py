"""The shipped default models and the demo built on them."""

from __future__ import annotations

import pytest
import torch

import advface_fast as af
from advface_fast.data.world import IDS
from advface_fast.encoders.base import TorchEncoder
from advface_fast.encoders.embed import embed
from advface_fast.metrics import genuine_impostor_pairs, pair_distances, verification_accuracy
from advface_fast.models.defaults import ASSETS, load_default

pytestmark = pytest.mark.skipif(
    not (ASSETS / "encoder.safetensors").exists(), reason="default models not trained (advface-fast train-default)"
)


@pytest.fixture(scope="module")
def models():
    return load_default()


def test_shipped_files_are_small_and_ours(models):
    total = sum(p.stat().st_size for p in ASSETS.glob("*.safetensors"))
    assert total <= 25 * 2**20, total
    assert isinstance(models.shadow, af.MLPDecoder) and isinstance(models.attacker, af.ConvDecoder)
    assert models.shadow.in_dim == models.encoder.dim == 128


def test_encoder_verifies_heldout_identities_at_95_percent(models):
    """Measured live, on identities the encoder never saw (10-fold protocol, flip-summed embeddings)."""
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + 300)
    a = embed(models.encoder, models.world.render(ids, torch.full_like(ids, 2)))
    b = embed(models.encoder, models.world.render(ids, torch.full_like(ids, 3)))
    i, j, same = genuine_impostor_pairs(300)
    acc, _, _ = verification_accuracy(pair_distances(a[i], b[j]), same)
    assert acc >= 0.95, acc


def test_shadow_decoder_reconstructs_unseen_faces(models):
    ids = torch.arange(IDS["heldout"], IDS["heldout"] + 64)
    x = models.world.render(ids, torch.zeros_like(ids))
    with torch.no_grad():
        rec = models.shadow(embed(TorchEncoder(models.encoder), x, flip=False))
    assert (rec - x).abs().mean() < (x - x.mean(0)).abs().mean()  # better than the mean face


def test_missing_assets_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-default"):
        load_default(tmp_path)


def test_demo_runs_and_writes_the_picture(tmp_path):
    from advface_fast.cli.demo import run_demo

    res = run_demo(tmp_path, users=120)
    assert (tmp_path / "demo_grid.png").stat().st_size > 1000
    assert res["stored"]["verification accuracy (%)"] > 90
    # 120 people: 14,280 impostor pairs measure FAR 1e-3; at the clean threshold the stored row is its own refit
    assert res["stored"]["TAR@FAR 1e-3, system threshold (%)"] == res["stored"]["TAR@FAR 1e-3, re-fitted (%)"]
    assert 0 <= res["random"]["TAR@FAR 1e-3, system threshold (%)"] <= 100
    for start in ("random", "shadow"):
        assert res[start]["attack SSIM to the face"] < res["stored"]["attack SSIM to the face"]
        assert res[start]["attack accepted as the person (%)"] < res["stored"]["attack accepted as the person (%)"]


def test_user_models_folder_from_the_environment(tmp_path, monkeypatch):
    import shutil

    from advface_fast.cli import main
    from advface_fast.models.defaults import ASSETS, MODELS_ENV, default_models_dir

    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "empty"))
    assert default_models_dir() == tmp_path / "empty"
    with pytest.raises(FileNotFoundError, match="empty"):
        load_default()  # the user's folder, not silently the package's
    for name in ("encoder", "shadow", "attacker"):
        shutil.copy(ASSETS / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert load_default().shadow.in_dim == 128
    monkeypatch.delenv(MODELS_ENV)
    assert default_models_dir() == ASSETS
    with pytest.raises(SystemExit):  # train-default names no folder: refused, nothing written
        main(["train-default"])


@pytest.mark.slow
def test_train_default_at_another_dimension(tmp_path):
    from advface_fast.train.defaults import train_default

    info = train_default(
        tmp_path, ids=12, per_id=2, encoder_epochs=1, decoder_epochs=1, dim=40, progress=False, log=lambda s: None
    )
    assert info["world"]["dim"] == 40
    m = load_default(tmp_path)
    assert m.shadow.in_dim == 40 and m.encoder(m.world.render(torch.arange(3), torch.zeros(3))).shape == (3, 40)
    with pytest.raises(ValueError, match="dim"):
        train_default(tmp_path / "no", dim=1, progress=False)
    assert not (tmp_path / "no").exists()
