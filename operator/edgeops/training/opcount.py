"""Operation counts of an exported model, read from its graph: what a latency estimate for
hardware other than the evaluator's own CPU is built from (:mod:`edgeops.policy.hardware`).

TFLite flatbuffers (tflite, tflite-int8 and the one a tflm bundle embeds) are read with the
LiteRT interpreter (operators and tensor shapes); ONNX models with ``onnx`` and its shape
inference. For one inference (batch of one):

* ``macs``: multiply-accumulates of the layers that dominate an MCU's time:
  fully-connected / MatMul / Gemm (output elements x inner dimension), convolutions
  (output elements x kernel height x width x input channels per group) and depthwise
  convolutions (output elements x kernel height x width);
* ``elementwise``: output elements of every other operator (activations, adds, pooling,
  softmax, quantize ...), each counted as one operation;
* ``operators``: operators executed (each costs a fixed dispatch overhead on an MCU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OpCount:
    """Work of one inference: ``macs`` multiply-accumulates, ``elementwise`` other
    element operations, ``operators`` operators executed."""

    macs: int
    elementwise: int
    operators: int


def _positive(shape: Sequence[Any]) -> list[int]:
    return [max(int(d), 1) for d in shape]


def count_tflite(content: bytes) -> OpCount:
    """Counts of a TFLite flatbuffer. Raises whatever the LiteRT interpreter raises for
    bytes that are no model."""
    from edgeops.training.exports import _interpreter

    interp = _interpreter(content)
    shapes = {t["index"]: _positive(t["shape"]) for t in interp.get_tensor_details()}
    macs = elementwise = operators = 0
    for op in interp._get_ops_details():
        name = op["op_name"]
        if name == "DELEGATE":  # a delegate's node re-lists operators already counted
            continue
        operators += 1
        inputs = [shapes.get(i, [1]) for i in op["inputs"] if i >= 0]
        out = math.prod(shapes.get(op["outputs"][0], [1])) if len(op["outputs"]) else 0
        if name in ("FULLY_CONNECTED", "BATCH_MATMUL") and len(inputs) >= 2:
            # FULLY_CONNECTED weights are [units, inner]; BATCH_MATMUL's rhs is [.., inner, n].
            inner = inputs[1][-1] if name == "FULLY_CONNECTED" else inputs[1][-2]
            macs += out * inner
        elif name in ("CONV_2D", "CONV_3D") and len(inputs) >= 2:
            macs += out * math.prod(inputs[1][1:])  # [cout, kh, kw, cin]
        elif name == "DEPTHWISE_CONV_2D" and len(inputs) >= 2:
            macs += out * inputs[1][1] * inputs[1][2]  # [1, kh, kw, cout]
        else:
            elementwise += out
    return OpCount(macs, elementwise, operators)


def count_onnx(content: bytes) -> OpCount:
    """Counts of an ONNX model (shapes from ``onnx.shape_inference``). Raises
    ``onnx``'s errors for bytes that are no model."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load_from_string(content))
    graph = model.graph
    shapes: dict[str, list[int]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        # Unknown or symbolic dimensions (the batch) count as 1.
        shapes[info.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for init in graph.initializer:
        shapes[init.name] = _positive(numpy_helper.to_array(init).shape)
    macs = elementwise = operators = 0
    for node in graph.node:
        if node.op_type in ("Constant", "Shape", "Reshape", "Squeeze", "Unsqueeze", "Flatten"):
            continue  # no arithmetic: views and metadata
        operators += 1
        out = math.prod(shapes.get(node.output[0], [1])) if node.output else 0
        inputs = [shapes.get(name, [1]) for name in node.input]
        if node.op_type == "MatMul" and len(inputs) >= 2:
            macs += out * inputs[0][-1]
        elif node.op_type == "Gemm" and len(inputs) >= 2:
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            macs += out * (inputs[0][0] if trans_a else inputs[0][-1])
        elif node.op_type == "Conv" and len(inputs) >= 2:
            macs += out * math.prod(inputs[1][1:])  # [cout, cin/group, k...]
        else:
            elementwise += out
    return OpCount(macs, elementwise, operators)
