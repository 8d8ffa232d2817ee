"""The activation catalogue (advface_fast.models.activations) is the one encoding: the C++ enums say the
same, the Triton kernels' constexpr branches compute the named function for each code, and the
torch backward equals autograd's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from advface_fast.models.activations import (
    ACT_CODES,
    HIDDEN_ACTS,
    OUT_ACT_CODES,
    OUT_ACTS,
    hidden_activation,
    hidden_activation_backward,
    output_activation,
    output_activation_,
    output_activation_backward,
)

EPILOGUES_H = Path(__file__).resolve().parents[1] / "csrc" / "epilogues.h"
CPP_NAMES = {
    "Act": {"kRelu": "relu", "kLeakyRelu": "leaky_relu", "kGelu": "gelu"},
    "OutAct": {"kOutNone": "none", "kOutTanh": "tanh", "kOutSigmoid": "sigmoid"},
}


def _cpp_enum(name: str) -> dict[str, int]:
    m = re.search(rf"enum {name} : int \{{([^}}]*)\}}", EPILOGUES_H.read_text())
    assert m, f"enum {name} not found in {EPILOGUES_H}"
    return {k.strip(): int(v) for k, v in (item.split("=") for item in m.group(1).split(",") if item.strip())}


def test_cpp_enums_match_the_catalogue():
    for enum, table in (("Act", ACT_CODES), ("OutAct", OUT_ACT_CODES)):
        parsed = _cpp_enum(enum)
        assert set(parsed) == set(CPP_NAMES[enum]), f"enum {enum} has other members than the catalogue: {parsed}"
        assert {CPP_NAMES[enum][k]: v for k, v in parsed.items()} == table


def test_names_and_codes_are_one_to_one():
    assert set(HIDDEN_ACTS) == set(ACT_CODES) and set(OUT_ACTS) == set(OUT_ACT_CODES)
    for table in (ACT_CODES, OUT_ACT_CODES):
        assert sorted(table.values()) == list(range(len(table)))


def test_unknown_names_are_refused_by_name():
    from advface_fast import MLPDecoder

    with pytest.raises(ValueError, match="act='swish'"):
        MLPDecoder(4, [4], (1, 2, 2), act="swish")
    with pytest.raises(ValueError, match="out_act='softplus'"):
        MLPDecoder(4, [4], (1, 2, 2), out_act="softplus")


@pytest.mark.parametrize("act", HIDDEN_ACTS)
def test_hidden_backward_is_autograd(act):
    a = torch.randn(7, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a[0, :3] = 0.0  # the kink: autograd's sub-gradient there
    g = torch.randn(7, 13, dtype=torch.float64)
    x = a.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(hidden_activation(x, act, 0.2), x, g)
    assert torch.equal(hidden_activation_backward(g, a, act, 0.2), want)


@pytest.mark.parametrize("out_act", OUT_ACTS)
def test_output_backward_from_output_is_autograd(out_act):
    a = torch.randn(5, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g = torch.randn(5, 11, dtype=torch.float64)
    x = a.clone().requires_grad_(True)
    y = output_activation(x, out_act)
    (want,) = torch.autograd.grad(y, x, g)
    got = output_activation_backward(g, y.detach(), out_act)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    assert torch.equal(output_activation_(a.clone(), out_act), y.detach())


try:  # the Triton activation helpers (kernels/_common.py), run for every code under the interpreter
    import triton
    import triton.language as tl
    from advface_fast.kernels._common import hidden_act, hidden_act_grad, out_act_and_grad
except ImportError:  # no Triton here: the test below skips
    triton = None
else:

    @triton.jit
    def _probe(a_ptr, h_ptr, dh_ptr, y_ptr, dy_ptr, n, slope, ACT: tl.constexpr, OUT: tl.constexpr, B: tl.constexpr):
        offs = tl.arange(0, B)
        mask = offs < n
        a = tl.load(a_ptr + offs, mask=mask, other=0.0)
        tl.store(h_ptr + offs, hidden_act(a, ACT, slope), mask=mask)
        saved = a if ACT == 2 else hidden_act(a, ACT, slope)  # gelu's grad takes a, the others h
        tl.store(dh_ptr + offs, hidden_act_grad(saved, ACT, slope), mask=mask)
        y, dy = out_act_and_grad(a, OUT)
        tl.store(y_ptr + offs, y, mask=mask)
        tl.store(dy_ptr + offs, dy, mask=mask)


def test_triton_branches_compute_the_catalogue_names():
    if triton is None:
        pytest.skip("Triton is not installed")
    from helpers import triton_interpreter_broken

    if triton_interpreter_broken():
        pytest.skip(triton_interpreter_broken())
    a = torch.linspace(-3, 3, 61)
    for act, code in ACT_CODES.items():
        for out_act, out_code in OUT_ACT_CODES.items():
            h, dh, y, dy = (torch.empty_like(a) for _ in range(4))
            _probe[(1,)](a, h, dh, y, dy, a.numel(), 0.2, ACT=code, OUT=out_code, B=64)
            torch.testing.assert_close(h, hidden_activation(a, act, 0.2), rtol=1e-5, atol=1e-6)
            want_dh = hidden_activation_backward(torch.ones_like(a), a, act, 0.2)
            torch.testing.assert_close(dh, want_dh, rtol=1e-5, atol=1e-6)
            want_y = output_activation(a, out_act)
            torch.testing.assert_close(y, want_y, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(dy, output_activation_backward(torch.ones_like(a), want_y, out_act))
