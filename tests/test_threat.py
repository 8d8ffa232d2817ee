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
from advface_fast.keys import keyed_rotation

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
    prot = af.protect(z, dec, eps=0.15, alpha=0.03, steps=5, progress=False, key=b"x" * 32)
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
    q = keyed_rotation(b"k" * 32, 12)
    z = torch.nn.functional.normalize(torch.randn(40, 12, dtype=torch.float64), dim=1)
    stored = z @ q.T
    assert rotation_error(procrustes(z[:12], stored[:12]), q) < 1e-9
    assert rotation_error(procrustes(z[:3], stored[:3]), q) > 0.3
    assert 0.5 < rotation_error(keyed_rotation(b"j" * 32, 12), q) < 1.5  # unrelated keys


def test_decoder_attack_and_knowledge_text():
    dec = af.MLPDecoder(4, [8], (1, 2, 2))
    a = DecoderAttack("naive", dec)
    assert a.reconstruct(torch.randn(3, 4)).shape == (3, 1, 2, 2)
    text = Knowledge(encoder="white-box", algorithm=True, settings="right", shadow="own").describe()
    assert "white-box" in text and "own shadow" in text and "no key" in text
