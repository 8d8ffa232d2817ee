"""The evaluation harness: attackers, baselines, and a small end-to-end run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from advface_fast.eval import ATTACKERS, EvalConfig, gaussian_same_l2, laplace_dp, make_attacker, run_evaluation
from advface_fast.eval.baselines import laplace_sensitivity, uniform_linf
from advface_fast.models.defaults import ASSETS


@pytest.mark.parametrize("name", [a for a in ATTACKERS if a != "shipped_conv"])
def test_attackers_map_templates_to_images(name):
    m = make_attacker(name, 128, (3, 32, 32))
    assert m(torch.randn(2, 128)).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown attacker"):
        make_attacker("gan", 128, (3, 32, 32))


def _unit(n=400, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)


def test_baselines_keep_norms_and_spend_the_stated_budget():
    z = _unit()
    u = uniform_linf(z, 0.04)
    assert torch.allclose(u.norm(dim=1), torch.ones(len(z)), atol=1e-5)
    ref = torch.nn.functional.normalize(z + 0.03 * torch.sign(torch.randn_like(z)), dim=1)
    g = gaussian_same_l2(z, ref)
    assert torch.allclose(g.norm(dim=1), torch.ones(len(z)), atol=1e-5)
    # before re-normalisation the Gaussian step has exactly AdvFace's L2 norm; after it, about as far
    assert torch.allclose((g - z).norm(dim=1).mean(), (ref - z).norm(dim=1).mean(), rtol=0.1)
    assert laplace_sensitivity(128) == pytest.approx(2 * math.sqrt(128))
    lap = laplace_dp(z, 1e6)  # epsilon huge: almost no noise
    assert (lap - z).abs().max() < 1e-3
    noisy = laplace_dp(z, 10.0)
    assert (noisy - z).norm(dim=1).mean() > 0.5
    with pytest.raises(ValueError, match="epsilon"):
        laplace_dp(z, 0.0)


def test_config_rejects_unknown_settings(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"users": 10, "epz": 1}))
    with pytest.raises(ValueError, match="unknown settings"):
        EvalConfig.from_json(tmp_path / "c.json")


@pytest.mark.slow
@pytest.mark.skipif(not (ASSETS / "encoder.safetensors").exists(), reason="default models not trained")
def test_small_end_to_end_run(tmp_path, monkeypatch):
    cfg = EvalConfig(
        users=60,
        attacker_ids=20,
        attacker_per_id=4,
        attacker_epochs=1,
        attackers=["shipped_conv", "mlp_deep"],
        adaptive_attacker="mlp_deep",
        steps=4,
        sweep_eps=[0.04],
        laplace_epsilons=[50.0],
        sweep_steps=[2],
        sweep_alpha_ratio=[0.1],
    )
    lines: list[str] = []
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if not installed
    res = run_evaluation(cfg, tmp_path, log=lines.append)
    for f in ("report.md", "results.json", "grid.png"):
        assert (tmp_path / f).stat().st_size > 100
    # the figure it could not draw is said to be skipped, with the extra that draws it
    assert not (tmp_path / "frontier.png").exists()
    assert "frontier.png skipped: matplotlib is not installed" in lines[-1] and "[eval]" in lines[-1]
    assert "frontier.png skipped" in (tmp_path / "report.md").read_text()
    util, priv = res["utility"], res["privacy"]
    assert set(util) >= {"unprotected", "AdvFace start=random", "AdvFace start=shadow", "Laplace DP, epsilon 50"}
    assert "adaptive mlp_deep" in priv["AdvFace start=random"]
    # the shipped attacker recognises unprotected people and is stopped by AdvFace
    base = priv["unprotected"]["shipped_conv"]["identity_inference"]
    assert base > 20
    assert priv["AdvFace start=random"]["shipped_conv"]["identity_inference"] < base / 2
    assert util["AdvFace start=random"]["vs_fresh"]["acc"] >= util["unprotected"]["vs_fresh"]["acc"] - 5
    # at the clean gallery's own threshold the unprotected TAR is its re-fitted TAR, within FAR 1e-3
    clean = util["unprotected"]["vs_fresh"]
    assert clean["tar_at_clean_threshold"] == pytest.approx(clean["tar_at_far_1e-3"])
    assert clean["far_at_clean_threshold"] <= 1e-3
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["users"] == 60
    assert (saved["dim"], saved["config"]["eps"]) == (128, 0.04)  # eps None: the default for the dimension
    moved = util["AdvFace start=random"]["mean_cosine_to_clean"]
    assert util["unprotected"]["mean_cosine_to_clean"] == pytest.approx(1.0) and 0.3 < moved < 0.999
