"""Mechanics of the EOT optimisation attack (advface_fast/eval/threat/eot_optimisation.py) on tiny
models: its random views are the transforms they claim, and optimising over them gives images
whose match survives views better than plain optimisation's."""

from __future__ import annotations

import pytest
import torch
from helpers import LinearEncoder

import advface_fast as af
from advface_fast.eval.threat.eot_optimisation import EOTOptimisationAttack, RandomView
from advface_fast.eval.threat.optimisation import optimise_images

COS = torch.nn.functional.cosine_similarity


def _image(n: int = 2, side: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_a_view_without_scale_or_jitter_is_a_shift_of_the_image_or_its_flip():
    x, shift = _image(), 2
    view = RandomView(shift=shift, scale=0.0, jitter=0.0, seed=5)
    for _ in range(12):
        y = view(x)
        # some flip and integer shift within range reproduces the view on the interior
        # (bilinear sampling at exact pixel centres is exact up to float rounding, 1e-6)
        core = (slice(None), slice(None), slice(shift, -shift), slice(shift, -shift))
        found = any(
            torch.allclose(y[core], torch.roll(src, (dy, dx), dims=(-2, -1))[core], atol=1e-5)
            for src in (x, x.flip(-1))
            for dx in range(-shift, shift + 1)
            for dy in range(-shift, shift + 1)
        )
        assert found


def test_views_stay_in_the_box_keep_the_shape_repeat_by_seed_and_pass_gradients():
    x = _image().requires_grad_(True)
    a, b = RandomView(seed=1), RandomView(seed=1)
    ya, yb = a(x), b(x)
    assert ya.shape == x.shape and ya.abs().max() <= 1
    assert torch.equal(ya, yb)  # same seed, same draws
    assert not torch.equal(a(x), RandomView(seed=2)(x))
    ya.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"shift": -1}, "shift"), ({"scale": 1.0}, "scale"), ({"jitter": -0.1}, "jitter")],
)
def test_bad_view_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomView(**kwargs)


def test_a_view_of_a_non_batch_is_refused():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        RandomView()(torch.zeros(3, 8, 8))


def test_eot_images_keep_their_match_under_views_better_than_plain_optimisation():
    torch.manual_seed(0)
    side = 12
    enc = af.TorchEncoder(LinearEncoder(3 * side * side, 16))
    target = enc(_image(8, side))
    shape = (3, side, side)
    plain, _ = optimise_images(enc.features, target, shape, steps=150, lr=0.1, tv=0.0)
    eot = EOTOptimisationAttack("eot", enc.features, shape, steps=150, view=RandomView(seed=0))
    robust = eot(target)
    assert robust.shape == (8, *shape) and robust.abs().max() < 1

    def under_views(img: torch.Tensor) -> float:
        view = RandomView(seed=99)  # fresh views, the same for both
        return float(torch.stack([COS(enc.features(view(img)), target, dim=1).mean() for _ in range(40)]).mean())

    assert under_views(robust) > under_views(plain) + 0.05
    assert COS(enc.features(plain), target, dim=1).mean() > 0.9  # plain wins on the unviewed image only
