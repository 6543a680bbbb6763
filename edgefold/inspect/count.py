"""Parameters, MACs and FLOPs per layer, with the conventions of thop/torchsummary.

- Conv: MACs = K_h * K_w * (C_in / groups) * C_out * H_out * W_out * N; params = weights + bias.
- ConvTranspose: MACs = K_h * K_w * (C_out / groups) * C_in * H_in * W_in * N (thop: per input pixel).
- Gemm / MatMul: MACs = M * K * N (times the batch dims); params = constant weight (+ constant bias).
- Not MACs, a FLOPs column of their own: elementwise ops and activations count one per output element,
  BatchNormalization/InstanceNormalization/LayerNormalization two (scale and shift; params = scale + bias),
  MaxPool/AveragePool K_h * K_w per output element, global pools one per input element, Softmax three
  per element (exp, sum, divide). Layout and data movement (Reshape, Transpose, Concat, Slice, Cast ...)
  count zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from edgefold.core.contract import Meta, meta_json
from edgefold.graph.index import GraphIndex, attrs
from edgefold.graph.names import node_key

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Relu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish",
               "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "Erf", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg",
               "Max", "Min", "Sum", "Mean", "Where", "Reciprocal", "Softplus", "Mish", "Sin", "Cos", "Floor",
               "Ceil", "Round", "Resize", "Upsample"}
NORMALISATION = {"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}
GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"}


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    input_shapes: tuple
    output_shapes: tuple
    params: int
    macs: int | None  # None: depends on a dimension that is not known (pass --shape)
    flops: int | None
    output: str = ""  # the node's first output: what identifies it (its name may be empty or repeat)
    # the stored tensors behind ``params`` as (initializer or Constant output, elements): several layers may read
    # one (the edge-strip pieces of a folded stem share its weight), and a model stores it once
    weights: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "input_shapes": [list(s) if s is not None else None
                                                                     for s in self.input_shapes],
                "output_shapes": [list(s) if s is not None else None for s in self.output_shapes],
                "params": self.params, "macs": self.macs, "flops": self.flops, "output": self.output}


def _prod(shape) -> int | None:
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


# ops a stored weight passes through on its way to a conv or matmul: Q/DQ of an INT8 model, casts of an FP16
# one, layout changes; the parameters are the stored tensor's (scales and zero points are not counted)
WEIGHT_PATH = {"DequantizeLinear", "QuantizeLinear", "Cast", "Identity", "Reshape", "Transpose", "Squeeze",
               "Unsqueeze"}


# ops whose output has as many elements as their data input
SAME_COUNT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast", "QuantizeLinear", "DequantizeLinear"}


def _numel(index: GraphIndex, name: str) -> int | None:
    """Elements of a tensor: from its inferred shape, else from the data input of the reshapes (and Q/DQ, casts)
    that made it."""
    for _ in range(16):
        count = _prod(index.shapes.get(name))
        if count is not None:
            return count
        node = index.producer.get(name)
        if node is None or node.op_type not in SAME_COUNT:
            return None
        name = node.input[0]
    return None


def _const_source(index: GraphIndex, name: str) -> tuple[str, int] | None:
    """The stored tensor behind a constant input (initializer or Constant node, also behind DequantizeLinear,
    Cast, ...) and its element count; None for runtime tensors."""
    for _ in range(8):
        if not name:
            return None
        if name in index.initializers:
            return name, int(np.prod(index.initializers[name].dims, dtype=np.int64))
        node = index.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            value = index.constant(name)
            return (name, int(value.size)) if value is not None else None
        if node.op_type not in WEIGHT_PATH:
            return None
        name = node.input[0]
    return None


def count_layer(index: GraphIndex, node: onnx.NodeProto) -> Layer:
    shapes = index.shapes
    ins = tuple(tuple(shapes[i]) if i in shapes else None for i in node.input)
    outs = tuple(tuple(shapes[o]) if o in shapes else None for o in node.output)
    op = node.op_type
    out0 = outs[0] if outs else None
    weight_inputs: list[str] = []
    macs: int | None = 0
    flops: int | None = 0
    a = attrs(node)
    if op in ("Conv", "ConvTranspose"):
        w = ins[1] if len(ins) > 1 else None
        weight_inputs = list(node.input[1:3])
        per_pixel = _prod(w[1:]) if w is not None else None  # (C_in/g | C_out/g) * K_h * K_w
        pixels = _prod(out0) if op == "Conv" else _prod(ins[0])  # thop: ConvTranspose per input pixel
        macs = pixels * per_pixel if pixels is not None and per_pixel is not None else None
    elif op == "Gemm":
        weight_inputs = list(node.input[1:3])
        a_shape = ins[0]
        k = None
        if a_shape is not None and len(a_shape) == 2:
            k = a_shape[0] if a.get("transA", 0) else a_shape[1]
        n_out = _prod(out0)
        macs = n_out * k if n_out is not None and isinstance(k, int) else None
    elif op == "MatMul":
        weight_inputs = [node.input[1]]
        k = ins[0][-1] if ins[0] else None
        n_out = _prod(out0)
        macs = n_out * k if n_out is not None and isinstance(k, int) else None
        b = ins[1] if len(ins) > 1 else None
        if macs is None and _const_source(index, node.input[1]) and b is not None and len(b) == 2 and isinstance(b[1], int):
            # A reshaped to a computed shape (Paddle's classifier head: Shape -> Slice -> Concat -> Reshape) has no
            # inferred shape, but its element count is its source's: with a constant K x N weight, M * K * N is
            # that count times N
            numel = _numel(index, node.input[0])
            macs = numel * b[1] if numel is not None else None
    elif op in NORMALISATION:
        weight_inputs = list(node.input[1:3])
        n = _prod(out0)
        flops = 2 * n if n is not None else None
    elif op in ("MaxPool", "AveragePool", "LpPool"):
        n = _prod(out0)
        flops = n * int(np.prod(a.get("kernel_shape", [1]))) if n is not None else None
    elif op in GLOBAL_POOLS:
        n = _prod(ins[0])
        flops = n
    elif op == "Softmax" or op == "LogSoftmax":
        n = _prod(out0)
        flops = 3 * n if n is not None else None
    elif op in ELEMENTWISE:
        n = _prod(out0)
        flops = n
    weights = tuple(w for w in (_const_source(index, i) for i in weight_inputs) if w is not None)
    return Layer(node.name or f"<{op}>", op, ins, outs, sum(size for _, size in weights), macs, flops,
                 node_key(node), weights)


@dataclass(frozen=True)
class Inventory:
    layers: tuple[Layer, ...]
    inputs: tuple[tuple[str, str, tuple], ...]  # (name, dtype, shape)
    first_layer: str | None  # the first conv's output: the folded one (edgefold metadata) or the first in graph order
    # the first layer's convs by output: every conv a fold wrote (edge-strip pieces, a camera format's pieces, an
    # OctConv's two convs), else every conv with no conv before it on the way from an input
    first_layers: tuple[str, ...] = ()
    preprocessing: tuple[str, ...] = ()  # outputs of the nodes the first layer's convs depend on (their inputs' work)

    @property
    def total(self) -> dict:
        def total_of(key: str) -> int | None:
            values = [getattr(layer, key) for layer in self.layers]
            return None if any(v is None for v in values) else int(sum(values))
        stored = {key: size for layer in self.layers for key, size in layer.weights}  # each stored tensor once
        return {"params": sum(stored.values()), "macs": total_of("macs"),
                "flops": total_of("flops")}

    def first_conv(self) -> Layer | None:
        return next((layer for layer in self.layers if layer.output == self.first_layer), None)

    def first_conv_pieces(self) -> tuple[Layer, ...]:
        """The convs that make the first layer (see ``first_layers``)."""
        keys = set(self.first_layers) or ({self.first_layer} if self.first_layer else set())
        return tuple(la for la in self.layers if la.output in keys)

    def input_bytes(self) -> int | None:
        total = 0
        for _, dtype, shape in self.inputs:
            n = _prod(shape)
            if n is None:
                return None
            total += n * np.dtype(dtype).itemsize
        return total

    def to_json(self) -> dict:
        return {"inputs": [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in self.inputs],
                "layers": [layer.to_json() for layer in self.layers], "total": self.total}


def _first_convs(index: GraphIndex) -> tuple[list[str], list[str]]:
    """The convs no conv precedes on the way from an input, and the nodes before them (by first output)."""
    convs: list[str] = []
    before: list[str] = []
    for node in index.nodes:  # topological order
        if node.op_type == "Constant":
            continue
        upstream = (index.producer.get(i) for i in node.input if i)
        if all(u is None or u.op_type == "Constant" or node_key(u) in before for u in upstream):
            (convs if node.op_type == "Conv" else before).append(node_key(node))
    return convs, before


def inventory(model: onnx.ModelProto) -> Inventory:
    index = GraphIndex(model)
    layers = tuple(count_layer(index, n) for n in index.nodes if n.op_type != "Constant")
    inputs = tuple((vi.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name,
                    tuple(index.shapes.get(vi.name, []))) for vi in index.real_inputs)
    folded = meta_json(model, Meta.FOLDED_CONVS, [])
    convs, before = _first_convs(index)
    first = folded[0] if folded else (convs[0] if convs else None)
    return Inventory(layers, inputs, first, tuple(folded or convs), tuple(before))
