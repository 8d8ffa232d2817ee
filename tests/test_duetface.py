"""DuetFace: the block DCT (exact inverse, orthonormal, JPEG zigzag), the channel split (a
partition), the model's shapes and file round trip, and the two-stage training on a tiny world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import advface_fast as af
from advface_fast.data.synthfaces import SynthFaces
from advface_fast.duetface import DuetFace, block_dct, block_idct, split_channels, zigzag_order
from advface_fast.duetface.dct import low_channel_mask, merge_channels
from advface_fast.duetface.train import train_duetface


def test_dct_inverse_energy_and_scipy():
    x = torch.randn(3, 2, 24, 16, dtype=torch.float64)
    c = block_dct(x)
    assert c.shape == (3, 128, 3, 2)
    torch.testing.assert_close(block_idct(c), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(c.pow(2).sum(), x.pow(2).sum())  # orthonormal
    scipy_fft = pytest.importorskip("scipy.fft")
    want = scipy_fft.dctn(x[1, 1, 8:16, 8:16].numpy(), norm="ortho").reshape(-1)[list(zigzag_order())]
    np.testing.assert_allclose(c[1, 64:, 1, 1].numpy(), want, atol=1e-12)
    flat = block_dct(torch.full((1, 1, 8, 8), 0.5))  # a constant block is all DC
    assert flat[0, 0, 0, 0] == pytest.approx(4.0) and flat[0, 1:].abs().max() < 1e-6
    with pytest.raises(ValueError, match="multiples of 8"):
        block_dct(torch.zeros(1, 1, 12, 8))


def test_zigzag_is_jpeg_order():
    zz = zigzag_order()
    assert zz[:10] == (0, 1, 8, 16, 9, 2, 3, 10, 17, 24) and sorted(zz) == list(range(64)) and zz[-1] == 63


@pytest.mark.parametrize("low", [1, 10, 63])
def test_split_is_a_partition(low):
    c = torch.randn(2, 192, 4, 4)
    lo, hi = split_channels(c, low)
    assert lo.shape[1] == 3 * low and hi.shape[1] == 192 - 3 * low
    torch.testing.assert_close(merge_channels(lo, hi, low), c, rtol=0, atol=0)
    mask = low_channel_mask(3, low)
    # each colour's lowest frequencies, and every channel in exactly one part
    assert mask.sum() == 3 * low and all(mask[64 * k : 64 * k + low].all() for k in range(3))
    tagged = torch.arange(192.0).reshape(1, 192, 1, 1)
    a, b = split_channels(tagged, low)
    assert sorted(torch.cat([a.flatten(), b.flatten()]).tolist()) == list(range(192))
    with pytest.raises(ValueError, match="low_per_colour"):
        low_channel_mask(3, 64)


def test_model_shapes_and_file_round_trip(tmp_path):
    m = DuetFace(image_size=16, upsample=4, dim=32, width=8, client_width=4).eval()
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    low, high = m.channels(x)
    assert low.shape == (5, 30, 8, 8) and high.shape == (5, 162, 8, 8)
    assert all(float(b.gate.detach()) == 0 for b in m.interact)
    e = m(x)
    assert e.shape == (5, 32)
    af.save_model(m, tmp_path / "duet.safetensors")
    back = af.load_model(tmp_path / "duet.safetensors").eval()
    torch.testing.assert_close(back(x), e)
    with pytest.raises(ValueError, match="multiple of 8"):
        DuetFace(image_size=15, upsample=1)


def test_two_stage_training_freezes_the_client_and_resumes(tmp_path):
    torch.manual_seed(0)
    world = SynthFaces(16, seed=3)
    x, y = world.dataset(6, 8)
    vx, vy = world.dataset(4, 4, id_offset=100)
    model = DuetFace(image_size=16, dim=16, width=8, client_width=4)
    logs: list[str] = []
    trained, hist = train_duetface(
        x,
        y,
        val=(vx, vy),
        model=model,
        epochs=2,
        batch_size=16,
        checkpoint_dir=tmp_path,
        progress=False,
        log=logs.append,
    )
    assert [len(hist["client"]), len(hist["server"])] == [2, 2]
    assert all(np.isfinite(h["loss"]) for h in hist["client"] + hist["server"])
    assert any(float(b.gate.detach()) != 0 for b in trained.interact)  # the server learned to use the masks
    client_before = {k: v.clone() for k, v in trained.client.state_dict().items()}
    # a rerun resumes both finished stages from their checkpoints: no epoch runs again
    logs.clear()
    again = DuetFace(image_size=16, dim=16, width=8, client_width=4)
    _, hist2 = train_duetface(
        x, y, model=again, epochs=2, batch_size=16, checkpoint_dir=tmp_path, progress=False, log=logs.append
    )
    assert sum("resumed" in s for s in logs) == 2 and not any("epoch" in s and "resumed" not in s for s in logs)
    for k, v in again.client.state_dict().items():
        torch.testing.assert_close(v, client_before[k])
    assert hist2["server"] == hist["server"]


@pytest.mark.slow
def test_eval_input_runs_duetface_through_the_harness(tmp_path):
    import json

    from advface_fast.cli import main

    cfg = {
        "train_ids": 12,
        "train_per_id": 3,
        "users": 40,
        "attacker_ids": 12,
        "attacker_per_id": 2,
        "attacker_epochs": 1,
        "attackers": ["mlp_wide"],
        "view_attacker_epochs": 1,
        "compare_with": None,
        "method_kwargs": {"epochs": 1, "width": 4, "client_width": 4, "dim": 16},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    argv = ["eval-input", "--config", str(tmp_path / "cfg.json"), "--out-dir", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(res["privacy"]) == {
        "template attacker mlp_wide",
        "server view, learned inverter",
        "server view, inverse DCT",
    }
    for r in res["privacy"].values():
        assert 0 <= r["identity_inference"] <= 100 and -1 <= r["ssim"] <= 1
    assert (tmp_path / "out" / "grid.png").exists() and "DuetFace" in (tmp_path / "out" / "report.md").read_text()
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--method", "Nope"]) == 2
