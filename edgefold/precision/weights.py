"""Weights as initializers, whatever their storage, so the quantiser scales them per output channel.

onnxruntime's quantiser treats any weight that is not an initializer as an activation: paddle2onnx stores
every conv weight as a ``Constant`` node, other exporters put a ``Cast``/``Identity`` between a weight and
its conv, and such weights get one scale for the whole tensor - the accuracy loss TensorRT's per-channel
INT8 convolutions exist to avoid (worst on depthwise convs, whose channels differ most). Here every
constant weight or bias input of a quantised op becomes an initializer of the same name; the nodes that
produced it are dropped once nothing reads them. Values are unchanged, so the model computes the same.
A weight shared by ops that quantise it on different axes (a Conv and a MatMul) gets a copy per op.
"""
from __future__ import annotations

import onnx
from onnx import numpy_helper

from edgefold.graph.index import GraphIndex, _subgraph_reads
from edgefold.graph.names import FreshNames, node_key

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_PRODUCERS = {"Constant", "Identity", "Cast"}  # the storage forms folded away here


def weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a quantised op's weight: what TensorRT wants the per-channel scale on."""
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    if node.op_type == "MatMul":
        return 1
    return 0


def weights_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    index = GraphIndex(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    fresh = FreshNames(g)
    inits = {t.name for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    axes_by_tensor: dict[str, set[tuple[str, int]]] = {}
    for node in g.node:
        if node.op_type in QUANTIZED_OPS:
            for name in list(node.input)[1:3]:
                axes_by_tensor.setdefault(name, set()).add((node.op_type, weight_axis(node)))
    added: dict[str, str] = {}
    for node in g.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        for pos in range(1, min(3, len(node.input))):
            name = node.input[pos]
            if not name or name in graph_inputs:
                continue
            shared = len(axes_by_tensor.get(name, ())) > 1
            if name in inits and not shared:
                continue
            value = index.constant(name)
            if value is None:
                continue
            target = fresh.name(f"{name}/{node.name or node_key(node)}") if shared else name
            if target not in added:
                g.initializer.append(numpy_helper.from_array(value, target))
                added[target] = name
            node.input[pos] = target
    _drop_dead_producers(g, set(added))
    return out


def _drop_dead_producers(g: onnx.GraphProto, replaced: set[str]) -> None:
    """Remove the nodes that produced a tensor which is an initializer now, then storage nodes nothing reads."""
    outputs = {o.name for o in g.output}
    keep = [n for n in g.node if not set(n.output) & replaced]
    while True:
        read = {name for n in keep for name in (*n.input, *_subgraph_reads(n))} | outputs
        alive = [n for n in keep if n.op_type not in _PRODUCERS or any(o in read for o in n.output)]
        if len(alive) == len(keep):
            break
        keep = alive
    del g.node[:]
    g.node.extend(keep)
