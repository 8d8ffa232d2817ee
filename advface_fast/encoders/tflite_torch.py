"""Run a small float TensorFlow Lite face recognition graph as a differentiable ``nn.Module``.

Why: the white-box attackers (decoders trained with an identity loss through ``E``) need the
encoder's gradients, which the LiteRT interpreter does not give. The module reads the flatbuffer
(the ``tflite`` schema package) and evaluates its operators with torch ops, so it computes the
interpreter's function (up to float summation order) with autograd. Activations are kept NCHW:
the module takes ``(B, 3, H, W)`` like every encoder of this package, where the file's graph
takes NHWC.

Supported: float32 graphs of the operators MobileNet-style face recognisers use (``CONV_2D``,
``DEPTHWISE_CONV_2D``, ``ADD``, ``SUB``, ``MUL``, ``RELU``, ``RELU6``, ``ABS``, ``RESHAPE``,
``FULLY_CONNECTED``, ``MEAN`` over the spatial axes) with their fused activations, TF ``SAME`` /
``VALID`` padding and dilation. Anything else (another operator, quantised tensors, more than one
subgraph) raises :class:`NotImplementedError` naming it, at load time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..optional import import_optional

_FUSED = {0: None, 1: F.relu, 3: F.relu6, 2: lambda x: x.clamp(-1, 1), 4: torch.tanh}


def _op_names(tfl: Any) -> dict[int, str]:
    return {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _options(tfl: Any, op: Any, cls_name: str) -> Any:
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = getattr(tfl, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _same_pad(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> torch.Tensor:
    """TensorFlow's ``SAME`` padding (the extra pixel goes after, right and bottom)."""
    pads = []
    for size, kk, ss, dd in zip(x.shape[-2:], k, s, d, strict=True):
        total = max((-(-size // ss) - 1) * ss + (kk - 1) * dd + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return F.pad(x, (left, right, top, bottom)) if top or bottom or left or right else x


class TFLiteTorchModule(nn.Module):
    """A float TFLite graph as a torch module: ``forward(x)`` takes ``(B, C, H, W)`` (the graph's
    NHWC input, transposed) and returns the graph's first output (4-d outputs come back NCHW,
    others as the graph gives them, with the batch axis following ``x``). The weights are
    buffers (frozen; the module exists for its input gradients)."""

    def __init__(self, model_bytes: bytes) -> None:
        tfl = import_optional("tflite", "the TFLite graph in torch")

        super().__init__()
        model = tfl.Model.GetRootAsModel(model_bytes, 0)
        if model.SubgraphsLength() != 1:
            raise NotImplementedError(f"TFLite models with {model.SubgraphsLength()} subgraphs are not supported")
        g = model.Subgraphs(0)
        names = _op_names(tfl)
        float32 = tfl.TensorType.FLOAT32

        def const(t: int) -> np.ndarray | None:
            tensor = g.Tensors(t)
            data = model.Buffers(tensor.Buffer()).DataAsNumpy()
            if isinstance(data, int) or data is None or len(data) == 0:
                return None
            dtype = {float32: np.float32, tfl.TensorType.INT32: np.int32, tfl.TensorType.INT64: np.int64}.get(
                tensor.Type()
            )
            if dtype is None:
                raise NotImplementedError(f"tensor {tensor.Name().decode()}: type {tensor.Type()} (quantised?)")
            return np.frombuffer(data.tobytes(), dtype=dtype).reshape(tensor.ShapeAsNumpy().tolist() or ())

        shapes = {t: g.Tensors(t).ShapeAsNumpy().tolist() or [] for t in range(g.TensorsLength())}
        arrays: dict[str, np.ndarray] = {}
        self.nodes: list[tuple[str, list[int | str | None], int, dict[str, Any]]] = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            if name not in _OPS:
                raise NotImplementedError(f"TFLite operator {name} is not supported by TFLiteTorchModule")
            ins = [op.Inputs(j) for j in range(op.InputsLength())]
            refs: list[int | str | None] = []
            for j, t in enumerate(ins):
                c = const(t) if t >= 0 else None
                if t < 0:
                    refs.append(None)
                elif c is None:
                    refs.append(t)  # an activation, computed by an earlier operator
                else:  # a constant, laid out once for NCHW activations
                    other = [shapes[u] for k, u in enumerate(ins) if k != j and u >= 0]
                    key = f"c{t}_{name.lower()}_{j}"
                    arrays[key] = _to_nchw(name, j, c, len(other[0]) if other else 0)
                    refs.append(key)
            self.nodes.append((name, refs, op.Outputs(0), _attrs(tfl, name, op)))
        for key, arr in arrays.items():
            self.register_buffer(key, torch.from_numpy(np.array(arr, copy=True)))
        if g.InputsLength() != 1:
            raise ValueError(f"expected one graph input, the model has {g.InputsLength()}")
        self.input_index, self.output_index = g.Inputs(0), g.Outputs(0)
        if g.Tensors(self.input_index).Type() != float32:
            raise NotImplementedError("only float32 graph inputs are supported (the model is quantised)")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TFLiteTorchModule:
        return cls(Path(path).read_bytes())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[int, torch.Tensor] = {self.input_index: x}

        def get(ref: int | str | None) -> torch.Tensor | None:
            if ref is None:
                return None
            if isinstance(ref, int):
                return env[ref]
            c = getattr(self, ref)
            return c.to(x.dtype) if c.is_floating_point() else c

        for name, refs, out, a in self.nodes:
            args = [get(r) for r in refs]
            y = _OPS[name](args, a)
            act = _FUSED.get(a.get("act", 0))
            env[out] = act(y) if act is not None else y
        return env[self.output_index]


def _attrs(tfl: Any, name: str, op: Any) -> dict[str, Any]:
    """The options each supported operator needs, read from its flatbuffer table."""
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        o = _options(tfl, op, "Conv2DOptions" if name == "CONV_2D" else "DepthwiseConv2DOptions")
        act = o.FusedActivationFunction()
        if act not in _FUSED:
            raise NotImplementedError(f"{name}: fused activation {act} is not supported")
        return {
            "same": o.Padding() == tfl.Padding.SAME,
            "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor() or 1, o.DilationWFactor() or 1),
            "act": act,
        }
    if name in ("ADD", "SUB", "MUL", "FULLY_CONNECTED"):
        cls = {
            "ADD": "AddOptions",
            "SUB": "SubOptions",
            "MUL": "MulOptions",
            "FULLY_CONNECTED": "FullyConnectedOptions",
        }
        o = _options(tfl, op, cls[name])
        act = o.FusedActivationFunction() if o is not None else 0
        if act not in _FUSED:
            raise NotImplementedError(f"{name}: fused activation {act} is not supported")
        return {"act": act}
    if name == "RESHAPE":
        o = _options(tfl, op, "ReshapeOptions")
        shape = o.NewShapeAsNumpy() if o is not None and o.NewShapeLength() else None
        return {"new_shape": [int(d) for d in shape] if shape is not None else None}
    if name == "MEAN":
        o = _options(tfl, op, "ReducerOptions")
        return {"keep": bool(o.KeepDims()) if o is not None else False}
    return {}


def _conv(v: list, a: dict) -> torch.Tensor:
    x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
    if a["same"]:
        x = _same_pad(x, tuple(w.shape[-2:]), a["stride"], a["dilation"])
    return F.conv2d(x, w, b, stride=a["stride"], dilation=a["dilation"])


def _depthwise(v: list, a: dict) -> torch.Tensor:
    x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
    if a["same"]:
        x = _same_pad(x, tuple(w.shape[-2:]), a["stride"], a["dilation"])
    return F.conv2d(x, w, b, stride=a["stride"], dilation=a["dilation"], groups=x.shape[1])


def _to_nchw(op: str, position: int, c: np.ndarray, other_rank: int) -> np.ndarray:
    """A constant input of ``op`` in the layout the torch evaluation wants: conv weights as
    ``(O, I, kh, kw)``, NHWC-broadcast operands of elementwise ops as NCHW-broadcast ones."""
    if op == "CONV_2D" and position == 1:
        return c.transpose(0, 3, 1, 2)  # (O, kh, kw, I) -> (O, I, kh, kw)
    if op == "DEPTHWISE_CONV_2D" and position == 1:
        return c.transpose(3, 0, 1, 2)  # (1, kh, kw, C*M) -> (C*M, 1, kh, kw)
    if op in ("ADD", "SUB", "MUL") and other_rank == 4:
        if c.ndim == 1 and c.size > 1:
            return c.reshape(-1, 1, 1)
        if c.ndim == 4:
            return c.transpose(0, 3, 1, 2)
        if c.ndim in (2, 3):
            raise NotImplementedError(f"{op}: a rank-{c.ndim} constant broadcast against NHWC is not supported")
    return c


def _binary(fn: Any) -> Any:
    def run(v: list, a: dict) -> torch.Tensor:
        return fn(v[0], v[1])

    return run


def _reshape(v: list, a: dict) -> torch.Tensor:
    x = v[0]
    if len(v) > 1 and v[1] is not None:
        shape = [int(s) for s in v[1].tolist()]
    elif a.get("new_shape"):
        shape = list(a["new_shape"])
    else:
        raise NotImplementedError("RESHAPE with neither a shape tensor nor new_shape options")
    if x.ndim == 4:
        x = x.permute(0, 2, 3, 1)  # the graph's reshape is of NHWC memory
    shape[0] = -1 if len(shape) > 1 else shape[0]  # the batch axis follows the input
    y = x.reshape([x.shape[0], *shape[1:]]) if len(shape) > 1 else x.reshape(shape)
    return y.permute(0, 3, 1, 2) if y.ndim == 4 else y


def _fully_connected(v: list, a: dict) -> torch.Tensor:
    x, w, b = v[0], v[1], v[2] if len(v) > 2 else None
    if x.ndim == 4:
        x = x.permute(0, 2, 3, 1)
    return F.linear(x.reshape(x.shape[0], -1), w, b)


def _mean(v: list, a: dict) -> torch.Tensor:
    x, axes = v
    nhwc_to_nchw = {0: 0, 1: 2, 2: 3, 3: 1}
    dims = [nhwc_to_nchw[int(d) % 4] for d in axes.flatten().tolist()] if x.ndim == 4 else axes.tolist()
    return x.mean(dim=dims, keepdim=a["keep"])


_OPS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "ADD": _binary(torch.add),
    "SUB": _binary(torch.sub),
    "MUL": _binary(torch.mul),
    "RELU": lambda v, a: F.relu(v[0]),
    "RELU6": lambda v, a: F.relu6(v[0]),
    "ABS": lambda v, a: v[0].abs(),
    "RESHAPE": _reshape,
    "FULLY_CONNECTED": _fully_connected,
    "MEAN": _mean,
}
