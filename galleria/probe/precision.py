"""How a probe's weights are stored: the page downloads them, so they are its size.

``float16`` and ``int8`` shrink storage only: each stored weight goes through a Cast (or a
DequantizeLinear, with one scale per output channel) back to float32 before use, so every operator
still computes in float32 and onnxruntime folds the conversion away when it loads the model.
"""
from __future__ import annotations

import numpy as np

PRECISIONS = ("float32", "float16", "int8")
SMALL = 256  # tensors with fewer values (biases, norms' scales) stay float32: they cost nothing


def store_weights(onnx: bytes, precision: str) -> bytes:
    """The model ``onnx`` (serialized) with its large float32 weights stored in ``precision``."""
    if precision == "float32":
        return onnx
    import onnx as onnx_lib
    from onnx import TensorProto, helper, numpy_helper

    model = onnx_lib.load_from_string(onnx)
    graph = model.graph
    as_matmul_b = {node.input[1] for node in graph.node if node.op_type == "MatMul"}  # [in, out]: a scale per column
    kept, converts = [], []
    for tensor in graph.initializer:
        values = numpy_helper.to_array(tensor)
        if tensor.data_type != TensorProto.FLOAT or values.size < SMALL:
            kept.append(tensor)
            continue
        stored = tensor.name + "__stored"
        if precision == "float16" or values.ndim < 2:
            kept.append(numpy_helper.from_array(values.astype(np.float16), stored))
            converts.append(helper.make_node("Cast", [stored], [tensor.name], to=TensorProto.FLOAT))
            continue
        axis = 1 if tensor.name in as_matmul_b and values.ndim == 2 else 0  # the output's axis
        rows = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        scale = np.abs(rows).max(1) / 127.0
        scale[scale == 0] = 1.0
        shape = [1] * values.ndim
        shape[axis] = -1
        quantized = np.clip(np.rint(values / scale.reshape(shape)), -127, 127).astype(np.int8)
        kept += [numpy_helper.from_array(quantized, stored),
                 numpy_helper.from_array(scale.astype(np.float32), stored + "_scale"),
                 numpy_helper.from_array(np.zeros(len(scale), np.int8), stored + "_zero")]
        converts.append(helper.make_node("DequantizeLinear", [stored, stored + "_scale", stored + "_zero"],
                                         [tensor.name], axis=axis))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = converts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()
