"""The reference engine against analytic answers (design §1) for a linear decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import LinearEncoder, unit_rows

import advface_fast as af
from advface_fast.engines.reference import clipped_sign_step_ref, l1_input_grad_ref
from advface_fast.engines.seeding import row_uniform_ref

D, OUT = 20, (2, 4, 3)
P = int(np.prod(OUT))


def linear_decoder(seed: int = 0) -> af.MLPDecoder:
    """hidden=[] and out_act='none': S(z) = W z + b exactly."""
    torch.manual_seed(seed)
    return af.MLPDecoder(D, [], OUT, out_act="none").double()


def numpy_loop(W, b, z0, centre, target, eps, alpha, steps):
    """z_{t+1} = clip(z_t + alpha sign(W^T sign(W z_t + b - x~)), c - eps, c + eps), in numpy."""
    z = z0.copy()
    for _ in range(steps):
        g = np.sign(W @ z.T + b[:, None] - target.T).T @ W  # rows: W^T sign(...)
        z = np.clip(z + alpha * np.sign(g), centre - eps, centre + eps)
    return z


def weights(dec):
    return dec.layers[0].weight.detach().numpy(), dec.layers[0].bias.detach().numpy()


@pytest.mark.parametrize("steps", [0, 1, 7])
def test_online_original_start_matches_analytic_loop(steps):
    dec = linear_decoder()
    W, b = weights(dec)
    z = unit_rows(9, D, seed=1, dtype=np.float64)
    x = np.random.default_rng(2).uniform(-1, 1, (9, *OUT))
    eps, alpha = 0.05, 0.01
    got = af.protect(
        z, dec, eps=eps, alpha=alpha, steps=steps, start="original", images=x, renorm=False, progress=False
    )
    want = numpy_loop(W, b, z, z, x.reshape(9, -1), eps, alpha, steps)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert steps == 0 or np.abs(got - z).max() > 0  # it moved


def test_offline_shadow_start_matches_analytic_loop():
    dec = linear_decoder(3)
    enc = LinearEncoder(P, D, seed=4).double()
    W, b = weights(dec)
    A = enc.proj.weight.detach().numpy()
    z = unit_rows(11, D, seed=5, dtype=np.float64)
    eps, alpha, steps = 0.04, 0.015, 5
    x_shadow = z @ W.T + b  # x~ = S(z)
    c = x_shadow @ A.T
    c /= np.linalg.norm(c, axis=1, keepdims=True)  # z~ = E(x~), L2-normalised
    want = numpy_loop(W, b, c, c, x_shadow, eps, alpha, steps)
    want *= (np.linalg.norm(z, axis=1) / np.linalg.norm(want, axis=1))[:, None]  # renorm to ||z||
    got = af.protect(z, dec, enc, eps=eps, alpha=alpha, steps=steps, start="shadow", progress=False)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.abs(got - z).max() > 0


def test_random_start_matches_analytic_loop_and_stays_in_ball():
    dec = linear_decoder(6)
    W, b = weights(dec)
    z = unit_rows(8, D, seed=7, dtype=np.float64)
    eps, alpha, steps, seed = 0.03, 0.01, 4, 99
    z0 = z + eps * row_uniform_ref(seed, np.arange(8), D)
    want = numpy_loop(W, b, z0, z, z @ W.T + b, eps, alpha, steps)
    got = af.protect(z, dec, eps=eps, alpha=alpha, steps=steps, start="random", seed=seed, renorm=False, progress=False)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert np.abs(got - z).max() <= eps + 1e-15


def test_original_offline_start_does_not_move():
    """At z itself S(z) = x~, so every L1 sub-gradient is exactly 0 and sign(0) = 0 (design §1)."""
    dec = linear_decoder(8)
    z = unit_rows(5, D, seed=9, dtype=np.float64)
    got = af.protect(z, dec, eps=0.1, alpha=0.05, steps=3, start="original", renorm=False, progress=False)
    np.testing.assert_array_equal(got, z)


def test_l1_grad_is_jacobian_transpose_times_sign():
    dec = linear_decoder(10)
    W, b = weights(dec)
    z = torch.from_numpy(unit_rows(4, D, seed=11, dtype=np.float64))
    target = torch.from_numpy(np.random.default_rng(12).uniform(-1, 1, (4, *OUT)))
    g = l1_input_grad_ref(dec, z, target).numpy()
    want = np.sign(z.numpy() @ W.T + b - target.reshape(4, -1).numpy()) @ W
    np.testing.assert_allclose(g, want, rtol=0, atol=1e-12)
    assert all(p.grad is None for p in dec.parameters())  # no weight gradient was formed


def test_clipped_sign_step_ties_and_boundary():
    z = torch.tensor([[0.0, 0.5, -0.5, 0.2, 0.2]], dtype=torch.float64)
    c = torch.tensor([[0.0, 0.45, -0.45, 0.2, 0.2]], dtype=torch.float64)
    g = torch.tensor([[0.0, 1.0, -3.0, -0.0, 2.0]], dtype=torch.float64)
    out = clipped_sign_step_ref(z, g, c, eps=0.05, alpha=0.1)
    # tie -> no move; already on the +eps boundary pushed outward -> stays on it; 0.2 + 0.1 clipped to 0.25
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.5, -0.5, 0.2, 0.25]], rtol=0, atol=1e-15)
