"""Mechanics of the threat-model suite's attacks on tiny models (the suite's numbers are in
benchmarks/results/threat-synthetic/, made by `advface-fast threat`)."""

from __future__ import annotations

import torch
from helpers import LinearEncoder

import advface_fast as af
from advface_fast.eval.threat.base import Knowledge
from advface_fast.eval.threat.decoder_attack import DecoderAttack
from advface_fast.eval.threat.optimisation import OptimisationAttack, optimise_images
from advface_fast.eval.threat.procrustes import procrustes, rotation_error
from advface_fast.eval.threat.purifier import fit_purifier, purifier_attack
from advface_fast.rotation import keyed_rotation

COS = torch.nn.functional.cosine_similarity


def test_optimisation_attack_raises_the_template_match():
    torch.manual_seed(0)
    enc = af.TorchEncoder(LinearEncoder(3 * 6 * 6, 8))
    target = enc(torch.rand(5, 3, 6, 6) * 2 - 1)
    x, trace = optimise_images(enc.features, target, (3, 6, 6), steps=60, lr=0.1, tv=0.0)
    assert trace[-1] > trace[0] + 0.3 and trace[-1] > 0.9
    assert x.abs().max() < 1  # stays in the image box
    attack = OptimisationAttack("opt", enc.features, (3, 6, 6), steps=5)
    assert attack.reconstruct(target).shape == (5, 3, 6, 6) and attack.knowledge.encoder == "white-box"


def test_purifier_beats_identity_on_held_out_pairs():
    torch.manual_seed(1)
    dec = af.MLPDecoder(16, [32], (3, 4, 4))
    z = torch.nn.functional.normalize(torch.randn(1200, 16), dim=1)
    # AdvFace's steps follow the decoder's gradients: a systematic perturbation a purifier can learn
    prot = af.protect(z, dec, eps=0.15, alpha=0.03, steps=5, progress=False, key=b"test-key-x-0123456789abcdefghijk")
    train, test = slice(0, 1000), slice(1000, 1200)
    p, losses = fit_purifier(prot[train], z[train], epochs=40, hidden=128, seed=0)
    with torch.no_grad():
        purified = p(prot[test])
    assert losses[-1] < losses[0]
    assert COS(purified, z[test]).mean() > COS(prot[test], z[test]).mean()
    attack = purifier_attack(
        "pur", lambda v: prot[train], z[train], dec, Knowledge(algorithm=True), epochs=2, hidden=16
    )
    assert attack.reconstruct(prot[test]).shape == (200, 3, 4, 4)


def test_procrustes_recovers_an_exact_rotation_from_d_pairs_and_not_from_few():
    q = keyed_rotation(b"test-key-k-0123456789abcdefghijk", 12)
    z = torch.nn.functional.normalize(torch.randn(40, 12, dtype=torch.float64), dim=1)
    stored = z @ q.T
    assert rotation_error(procrustes(z[:12], stored[:12]), q) < 1e-9
    assert rotation_error(procrustes(z[:3], stored[:3]), q) > 0.3
    assert 0.5 < rotation_error(keyed_rotation(b"test-key-j-0123456789abcdefghijk", 12), q) < 1.5  # unrelated keys


def test_decoder_attack_and_knowledge_text():
    dec = af.MLPDecoder(4, [8], (1, 2, 2))
    a = DecoderAttack("naive", dec)
    assert a.reconstruct(torch.randn(3, 4)).shape == (3, 1, 2, 2)
    text = Knowledge(encoder="white-box", algorithm=True, settings="right", shadow="own").describe()
    assert "white-box" in text and "own shadow" in text and "no key" in text


def test_moment_alignment_recovers_a_rotation_of_a_skewed_anisotropic_cloud_only():
    from advface_fast.eval.threat.key_recovery import moment_alignment

    g = torch.Generator().manual_seed(0)
    d = 6
    q = keyed_rotation(b"test-key-m-0123456789abcdefghijk", d)
    scales = torch.tensor([3.0, 2.5, 2.0, 1.5, 1.0, 0.5], dtype=torch.float64)
    own = torch.distributions.Gamma(2.0, 1.0).sample((20000, d)).double() * scales  # distinct spreads, skewed
    gallery = (torch.distributions.Gamma(2.0, 1.0).sample((20000, d)).double() * scales) @ q.T  # other people
    assert rotation_error(moment_alignment(own, gallery), q) < 0.1
    iso = torch.randn(20000, d, generator=g, dtype=torch.float64)  # all eigenvalues equal: nothing to align
    iso_gallery = torch.randn(20000, d, generator=g, dtype=torch.float64) @ q.T
    assert rotation_error(moment_alignment(iso, iso_gallery), q) > 0.5


def test_score_oracle_recovers_the_unrotated_template_from_d_queries():
    from advface_fast.eval.threat.key_recovery import oracle_scores, score_oracle

    d = 16
    q = keyed_rotation(b"test-key-o-0123456789abcdefghijk", d)
    stored = torch.nn.functional.normalize(torch.randn(5, d, dtype=torch.float64), dim=1)
    probes = torch.randn(64, d, dtype=torch.float64)
    exact = score_oracle(probes[:d], oracle_scores(probes[:d], stored, q, decimals=12))
    assert COS(exact.double(), stored @ q, dim=1).min() > 0.9999  # Q^T s, row-wise s Q
    rounded = score_oracle(probes, oracle_scores(probes, stored, q, decimals=2))
    assert COS(rounded.double(), stored @ q, dim=1).min() > 0.95
    few = score_oracle(probes[: d // 4], oracle_scores(probes[: d // 4], stored, q, decimals=12))
    assert COS(few.double(), stored @ q, dim=1).max() < 0.9  # underdetermined: not recovered


def test_linkability_of_rotated_templates_under_two_keys_is_near_zero():
    from advface_fast.eval.unlinkability import cross_pairs, linkability
    from advface_fast.rotation import rotate

    torch.manual_seed(3)
    people = 1500
    centre = torch.nn.functional.normalize(torch.randn(people, 32), dim=1)
    z = torch.nn.functional.normalize(torch.cat([centre, centre]) + 0.3 * torch.randn(2 * people, 32) / 32**0.5, dim=1)
    person = [f"p{i}" for i in range(people)] * 2
    a, b, mated = cross_pairs(person, seed=0)
    assert mated.sum() == people and (~mated).sum() > 3 * people
    names = torch.tensor([int(n[1:]) for n in person])
    assert bool((names[a][torch.from_numpy(mated)] == names[b][torch.from_numpy(mated)]).all())
    assert bool((names[a][torch.from_numpy(~mated)] != names[b][torch.from_numpy(~mated)]).all())
    same = linkability(z, z, a, b, mated)
    two_keys = linkability(
        rotate(z, b"test-key-1-0123456789abcdefghijk"), rotate(z, b"test-key-2-0123456789abcdefghijk"), a, b, mated
    )
    assert same["d_sys"] > 0.9 and two_keys["d_sys"] < 0.15
    assert two_keys["d_sys"] < two_keys["d_sys_floor"] + 0.05  # no more than the estimator's own bias
    assert abs(two_keys["mated_mean"] - two_keys["non_mated_mean"]) < 0.05
