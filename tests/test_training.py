"""Training: the encoder learns identities, the decoder learns to invert, checkpoints resume exactly."""

from __future__ import annotations

import pytest
import torch

import advface_fast as af
from advface_fast.data import SynthFaces
from advface_fast.train import fit_decoder, train_encoder
from advface_fast.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def world():
    sf = SynthFaces(16, seed=1)
    x, y = sf.dataset(40, 6)
    xv, yv = sf.dataset(30, 4, id_offset=10_000)
    return x, y, xv, yv


def test_encoder_learns_identities(world):
    x, y, xv, yv = world
    logs = []
    _, hist = train_encoder(
        x,
        y,
        val=(xv, yv),
        dim=32,
        width=12,
        epochs=6,
        batch_size=48,
        lr=5e-3,
        device="cpu",
        progress=False,
        log=logs.append,
    )
    assert len(hist) == 6 and hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_acc"] > 0.6  # held-out identities, chance is 0.5
    assert any("val_acc" in line for line in logs)


def test_decoder_fit_and_exact_resume(world, tmp_path):
    x, _, xv, _ = world
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(len(x), 16), dim=1)
    zv = torch.nn.functional.normalize(torch.randn(len(xv), 16), dim=1)

    def fresh():
        torch.manual_seed(5)
        return af.MLPDecoder(16, [32], (3, 16, 16))

    kw = {"val": (zv, xv), "epochs": 3, "batch_size": 32, "device": "cpu", "progress": False, "log": lambda s: None}
    full, hist = fit_decoder(z, x, fresh(), **kw)
    assert hist[-1]["loss"] < hist[0]["loss"] and {"val_l1", "val_psnr", "val_ssim"} <= set(hist[-1])
    ckpt = tmp_path / "ckpt.safetensors"
    fit_decoder(z, x, fresh(), checkpoint=ckpt, stop_after=1, **kw)  # interrupted after one epoch
    assert load_checkpoint(ckpt, fresh(), torch.optim.Adam(fresh().parameters()))["epoch"] == 1
    resumed, hist2 = fit_decoder(z, x, fresh(), checkpoint=ckpt, **kw)
    assert [h["epoch"] for h in hist2] == [1, 2, 3]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_round_trip_and_refusal(tmp_path):
    m = af.MLPDecoder(4, [5], (1, 2, 2))
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    m(torch.randn(3, 4)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", m, opt, {"epoch": 7, "history": []})
    m2 = af.MLPDecoder(4, [5], (1, 2, 2))
    opt2 = torch.optim.Adam(m2.parameters(), lr=0.5)
    assert load_checkpoint(tmp_path / "c.safetensors", m2, opt2)["epoch"] == 7
    assert opt2.param_groups[0]["lr"] == 0.01
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True))
    af.save_model(m, tmp_path / "model.safetensors")
    with pytest.raises(af.ModelFormatError, match="not an advface_fast training checkpoint"):
        load_checkpoint(tmp_path / "model.safetensors", m2, opt2)
