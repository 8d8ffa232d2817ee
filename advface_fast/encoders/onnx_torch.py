"""Run a small feed-forward ONNX face recognition graph as a differentiable ``nn.Module``.

Why: attackers who know the recognition model (white-box image optimisation, decoders trained
with an identity loss through ``E``) need its gradients, which onnxruntime does not give. The
module evaluates the graph node by node with torch ops, so it is exactly the ONNX model's
function (up to float summation order) and autograd goes through it.

Supported ops: the ones convolutional face recognition exports use (``Conv``,
``BatchNormalization``, ``PRelu``, ``Relu``, ``Add``, ``Sub``, ``Mul``, ``Gemm``, ``MatMul``,
``Flatten``, ``Reshape``, ``Dropout`` (inference: identity), ``Constant``, ``Identity``) and
``DequantizeLinear`` of constant weights, per-axis or blocked (opset 21), as in weight-only
quantised files such as OpenCV Zoo's ``*_int8bq.onnx``: the weights are dequantised once, at
load time. Any other op raises :class:`NotImplementedError` naming it.
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


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """``(q - zero) * scale`` with ``scale``/``zero`` per axis or per block along ``axis``."""
    x = q.astype(np.float32)
    z = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    if scale.size == 1:
        return (x - z.reshape(())) * scale.reshape(())
    axis = axis % q.ndim
    if block > 0:  # blocked: scale has q.shape[axis] / block entries along axis
        scale = np.repeat(scale, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis)
        z = np.repeat(z, block, axis=axis).take(np.arange(q.shape[axis]), axis=axis)
        return (x - z) * scale
    shape = [1] * q.ndim
    shape[axis] = -1
    return (x - z.reshape(shape)) * scale.reshape(shape)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = import_optional("onnx", "the ONNX graph in torch")

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxTorchModule(nn.Module):
    """An ONNX graph as a torch module: ``forward(x)`` takes the graph's one input and returns its
    first output. The weights are buffers (frozen; the module exists for its input gradients)."""

    def __init__(self, model_bytes: bytes) -> None:
        onnx = import_optional("onnx", "the ONNX graph in torch")
        numpy_helper = import_optional("onnx.numpy_helper")

        super().__init__()
        model = onnx.load_from_string(model_bytes)
        g = model.graph
        consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = []
        for node in g.node:
            a = _attrs(node)
            ins, outs = list(node.input), list(node.output)
            if node.op_type == "Constant":
                consts[outs[0]] = numpy_helper.to_array(a["value"])
            elif all(i in consts or i == "" for i in ins) and node.op_type in ("DequantizeLinear", "Reshape"):
                if node.op_type == "DequantizeLinear":
                    zero = consts[ins[2]] if len(ins) > 2 and ins[2] else None
                    consts[outs[0]] = _dequantize(
                        consts[ins[0]], consts[ins[1]], zero, int(a.get("axis", 1)), int(a.get("block_size", 0))
                    )
                else:
                    consts[outs[0]] = consts[ins[0]].reshape(tuple(int(s) for s in consts[ins[1]]))
            else:
                if node.op_type not in _OPS:
                    raise NotImplementedError(f"ONNX op {node.op_type} is not supported by OnnxTorchModule")
                self.nodes.append((node.op_type, ins, outs, a))
        used = {i for _, ins, _, _ in self.nodes for i in ins}
        self._names: dict[str, str] = {}
        for k, (name, arr) in enumerate(sorted((n, v) for n, v in consts.items() if n in used)):
            buf = f"c{k}"
            self._names[name] = buf
            t = torch.from_numpy(np.ascontiguousarray(arr))
            self.register_buffer(buf, t.float() if t.is_floating_point() else t)
        inputs = [i.name for i in g.input if i.name not in consts]
        if len(inputs) != 1:
            raise ValueError(f"expected one graph input, got {inputs}")
        self.input_name, self.output_name = inputs[0], g.output[0].name

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> OnnxTorchModule:
        return cls(repair_onnx_inputs(Path(path)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}

        def get(name: str) -> torch.Tensor:
            if name in env:
                return env[name]
            return getattr(self, self._names[name])

        for op, ins, outs, a in self.nodes:
            env[outs[0]] = _OPS[op]([get(i) if i else None for i in ins], a)
        return env[self.output_name]


def _conv(v: list, a: dict) -> torch.Tensor:
    x, w = v[0], v[1]
    b = v[2] if len(v) > 2 else None
    p = a.get("pads", [0, 0, 0, 0])
    if p[0] != p[2] or p[1] != p[3]:
        x, p = F.pad(x, (p[1], p[3], p[0], p[2])), [0, 0, 0, 0]
    return F.conv2d(x, w, b, a.get("strides", [1, 1]), (p[0], p[1]), a.get("dilations", [1, 1]), a.get("group", 1))


def _gemm(v: list, a: dict) -> torch.Tensor:
    x, w = v[0], v[1]
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y + a.get("beta", 1.0) * v[2] if len(v) > 2 and v[2] is not None else y


def _prelu(v: list, a: dict) -> torch.Tensor:
    x, s = v
    if x.ndim == 4 and s.numel() == x.shape[1]:  # per-channel slope (C, 1, 1): torch's fused kernel
        return F.prelu(x, s.reshape(-1))
    return torch.where(x >= 0, x, x * s)


def _bn(v: list, a: dict) -> torch.Tensor:
    x, gamma, beta, mean, var = v
    return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=a.get("epsilon", 1e-5))


def _flatten(v: list, a: dict) -> torch.Tensor:
    return v[0].flatten(a.get("axis", 1))


def _reshape(v: list, a: dict) -> torch.Tensor:
    return v[0].reshape(tuple(int(s) for s in v[1].tolist()))


_OPS = {
    "Conv": _conv,
    "BatchNormalization": _bn,
    "PRelu": _prelu,
    "Relu": lambda v, a: torch.relu(v[0]),
    "Add": lambda v, a: v[0] + v[1],
    "Sub": lambda v, a: v[0] - v[1],
    "Mul": lambda v, a: v[0] * v[1],
    "Gemm": _gemm,
    "MatMul": lambda v, a: v[0] @ v[1],
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": lambda v, a: v[0],
    "Identity": lambda v, a: v[0],
}


def repair_onnx_inputs(path: Path) -> bytes:
    """Drop graph inputs that are initialisers or that no node reads (SFace ships so)."""
    onnx = import_optional("onnx", "repairing the ONNX model's graph inputs")

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    used = {name for node in graph.node for name in node.input}
    keep = [i for i in graph.input if i.name not in inits and i.name in used]
    del graph.input[:]
    graph.input.extend(keep)
    return model.SerializeToString()
