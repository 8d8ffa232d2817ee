"""Write small float32 TFLite files for tests, with the ``tflite`` schema package's flatbuffer
builders (no TensorFlow needed): a graph is a list of operators over named tensors, constants
given as numpy arrays. The files run in the real LiteRT interpreter, so the torch evaluation of
:mod:`advface_fast.encoders.tflite_torch` is checked against it on operators, paddings and layouts the
shipped MobileFaceNet does not use."""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite


@dataclass
class Op:
    name: str  # BuiltinOperator name, e.g. "CONV_2D"
    inputs: list[str]
    output: str
    options: dict = field(default_factory=dict)  # padding, stride, dilation, act, keep_dims, multiplier


_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", "Conv2DOptions"),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", "DepthwiseConv2DOptions"),
    "ADD": ("AddOptions", "AddOptions"),
    "SUB": ("SubOptions", "SubOptions"),
    "MUL": ("MulOptions", "MulOptions"),
    "FULLY_CONNECTED": ("FullyConnectedOptions", "FullyConnectedOptions"),
    "MEAN": ("ReducerOptions", "ReducerOptions"),
    "RESHAPE": ("ReshapeOptions", "ReshapeOptions"),
}


def _ints(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(int(v))
    return b.EndVector()


def _options(b: flatbuffers.Builder, op: Op) -> tuple[int, int]:
    """(BuiltinOptions type, table offset) of ``op``; (0, 0) for options-free operators."""
    if op.name not in _OPTIONS:
        return 0, 0
    module_name, union_name = _OPTIONS[op.name]
    o = op.options
    start, end = getattr(tflite, f"{module_name}Start"), getattr(tflite, f"{module_name}End")

    def add(field_: str, value: object) -> None:
        getattr(tflite, f"{module_name}Add{field_}")(b, value)

    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        start(b)
        add("Padding", tflite.Padding.SAME if o.get("padding", "SAME") == "SAME" else tflite.Padding.VALID)
        sh, sw = o.get("stride", (1, 1))
        dh, dw = o.get("dilation", (1, 1))
        add("StrideH", sh)
        add("StrideW", sw)
        add("DilationHFactor", dh)
        add("DilationWFactor", dw)
        add("FusedActivationFunction", o.get("act", 0))
        if op.name == "DEPTHWISE_CONV_2D":
            add("DepthMultiplier", o.get("multiplier", 1))
    elif op.name == "MEAN":
        start(b)
        add("KeepDims", bool(o.get("keep_dims", False)))
    elif op.name == "RESHAPE":
        shape = _ints(b, o["new_shape"])
        start(b)
        add("NewShape", shape)
    else:
        start(b)
        add("FusedActivationFunction", o.get("act", 0))
    return getattr(tflite.BuiltinOptions, union_name), end(b)


def build(
    inputs: dict[str, tuple[int, ...]],
    consts: dict[str, np.ndarray],
    shapes: dict[str, tuple[int, ...]],
    ops: list[Op],
    output: str,
) -> bytes:
    """A one-subgraph model: ``inputs`` (name -> shape), constant tensors, the shapes of the
    intermediate tensors, the operators in order and the output tensor's name."""
    b = flatbuffers.Builder(1024)
    names = list(inputs) + list(consts) + list(shapes)
    index = {n: i for i, n in enumerate(names)}
    # buffer 0 is the empty buffer by convention; constants get one each
    buffer_of = {n: k + 1 for k, n in enumerate(consts)}
    buffers = [0]
    for n in consts:
        data = b.CreateNumpyVector(np.frombuffer(np.ascontiguousarray(consts[n]).tobytes(), np.uint8))
        tflite.BufferStart(b)
        tflite.BufferAddData(b, data)
        buffers.append(tflite.BufferEnd(b))
    tflite.BufferStart(b)
    buffers[0] = tflite.BufferEnd(b)
    tensors = []
    for n in names:
        arr = consts.get(n)
        shape = list(arr.shape) if arr is not None else list(inputs.get(n) or shapes[n])
        ttype = tflite.TensorType.INT32 if arr is not None and arr.dtype == np.int32 else tflite.TensorType.FLOAT32
        name_off, shape_off = b.CreateString(n), _ints(b, shape)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, buffer_of.get(n, 0))
        tflite.TensorAddName(b, name_off)
        tensors.append(tflite.TensorEnd(b))
    kinds = sorted({op.name for op in ops})
    codes = []
    for k in kinds:
        code = getattr(tflite.BuiltinOperator, k)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        codes.append(tflite.OperatorCodeEnd(b))
    operators = []
    for op in ops:
        ins, outs = _ints(b, [index[n] for n in op.inputs]), _ints(b, [index[op.output]])
        opt_type, opt = _options(b, op)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, kinds.index(op.name))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opt_type:
            tflite.OperatorAddBuiltinOptionsType(b, opt_type)
            tflite.OperatorAddBuiltinOptions(b, opt)
        operators.append(tflite.OperatorEnd(b))

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    t_vec, o_vec = vector(tensors), vector(operators)
    in_vec, out_vec = _ints(b, [index[n] for n in inputs]), _ints(b, [index[output]])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddOperators(b, o_vec)
    subgraph = tflite.SubGraphEnd(b)
    codes_vec, sub_vec, buf_vec = vector(codes), vector([subgraph]), vector(buffers)
    desc = b.CreateString("advface_fast test model")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, sub_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buf_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())
