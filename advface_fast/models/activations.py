"""The activation catalogue: every activation a decoder of the fused engines may use, once.

One integer encoding, shared by the C++/CUDA kernels (``csrc/epilogues.h``: ``enum Act``,
``enum OutAct``), the Triton kernels (the constexpr branches of ``kernels/_common.py``) and the
Python launchers, which pass these codes; ``tests/test_activations.py`` checks the C++ enums
against this table and runs the Triton branches for every code.
Beside each code, the torch forward and backward: the ``*_ref`` every kernel is tested against,
and what the written-out eager engine runs.

Hidden activations (``act``) take the pre-activation ``a``; their backward ``g * act'(a)`` is
ATen's own backward kernel (what autograd runs). Output activations (``out_act``) have their
derivative computed from the output ``y`` (as ATen's ``tanh_backward`` / ``sigmoid_backward``).

Adding an activation: a name and the next code here (both tables), its torch forward and backward
below, its branch in ``csrc/epilogues.h`` (``act_forward`` / ``act_grad`` or the ``OutAct``
pair) and in ``kernels/_common.py`` (``hidden_act`` / ``hidden_act_grad`` or
``out_act_and_grad``): three files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# hidden activations: name -> code (C++ ``enum Act``)
ACT_CODES: dict[str, int] = {"relu": 0, "leaky_relu": 1, "gelu": 2}
# output activations: name -> code (C++ ``enum OutAct``)
OUT_ACT_CODES: dict[str, int] = {"none": 0, "tanh": 1, "sigmoid": 2}
HIDDEN_ACTS: tuple[str, ...] = tuple(ACT_CODES)
OUT_ACTS: tuple[str, ...] = ("tanh", "sigmoid", "none")  # the decoders' order of choices (tanh first)


def check_act(act: str) -> None:
    """Raise ValueError unless ``act`` is a hidden activation of the catalogue."""
    if act not in ACT_CODES:
        raise ValueError(f"act={act!r} is not one of {', '.join(map(repr, HIDDEN_ACTS))}")


def check_out_act(out_act: str) -> None:
    """Raise ValueError unless ``out_act`` is an output activation of the catalogue."""
    if out_act not in OUT_ACT_CODES:
        raise ValueError(f"out_act={out_act!r} is not one of {', '.join(map(repr, OUT_ACTS))}")


def hidden_activation(x: torch.Tensor, act: str, negative_slope: float) -> torch.Tensor:
    """The hidden-layer activation named by ``act`` (gelu is the exact erf form), any shape and dtype."""
    if act == "relu":
        return F.relu(x)
    if act == "leaky_relu":
        return F.leaky_relu(x, negative_slope)
    return F.gelu(x)


def hidden_activation_backward(g: torch.Tensor, a: torch.Tensor, act: str, slope: float) -> torch.Tensor:
    """``g * act'(a)`` by ATen's own backward kernels (what autograd runs), in ``g``'s dtype.
    Mixed dtypes are computed in float32 (ATen's mixed-dtype gelu_backward rounds through bf16)."""
    if g.dtype != a.dtype:
        return hidden_activation_backward(g.float(), a.float(), act, slope).to(g.dtype)
    if act == "relu":
        return torch.ops.aten.threshold_backward(g, a, 0)
    if act == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward(g, a, slope, False)
    return torch.ops.aten.gelu_backward(g, a, approximate="none")


def output_activation(x: torch.Tensor, out_act: str) -> torch.Tensor:
    """The output activation named by ``out_act`` (``x`` itself for ``"none"``)."""
    if out_act == "tanh":
        return torch.tanh(x)
    if out_act == "sigmoid":
        return torch.sigmoid(x)
    return x


def output_activation_(y: torch.Tensor, out_act: str) -> torch.Tensor:
    """:func:`output_activation` in place on ``y``; returns ``y``."""
    if out_act == "tanh":
        y.tanh_()
    elif out_act == "sigmoid":
        y.sigmoid_()
    return y


def output_activation_backward(g: torch.Tensor, y: torch.Tensor, out_act: str) -> torch.Tensor:
    """``g * out_act'`` from the output ``y = out_act(a)`` by ATen's backward kernels."""
    if out_act == "tanh":
        return torch.ops.aten.tanh_backward(g, y)
    if out_act == "sigmoid":
        return torch.ops.aten.sigmoid_backward(g, y)
    return g
