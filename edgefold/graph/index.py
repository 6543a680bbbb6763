"""Read-only queries over an ONNX graph: who produces and consumes a tensor, constant values, shapes.

Constants include initializers, ``Constant`` nodes (paddle2onnx stores every weight that way) and small
subgraphs whose inputs are all constant (the legacy PyTorch ``ConstantOfShape/Equal/Where`` shape chain);
those are evaluated one node at a time with onnx's pure-numpy reference evaluator. Nothing here mutates
the model.
"""
from __future__ import annotations

from collections import defaultdict
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.graph import io as graph_io
from edgefold.graph.names import node_label

# ops whose value is not a function of their inputs, never evaluated as constants
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                     "Bernoulli", "Dropout"}
# a constant subgraph that grows past this is not "small"; we do not evaluate it
_MAX_CONST_ELEMENTS = 1 << 26


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset a model imports (1 when it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Outer-scope tensor names that a node's subgraphs (If/Loop/Scan bodies) read."""
    names: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            for inner in g.node:
                names.update(i for i in inner.input if i)
                names |= _subgraph_reads(inner)
    return names


class GraphIndex:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.opset = opset_of(model)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.nodes:  # nodes are known by index or output, never by name (optional, may repeat)
            for out in node.output:
                if out:
                    self.producer[out] = node
            for name in set(i for i in node.input if i) | _subgraph_reads(node):
                self.consumers[name].append(node)
        self.input_names = [i.name for i in self.graph.input]
        self.output_names = {o.name for o in self.graph.output}
        # an input with an initializer of the same name is a runtime-overridable default, not a constant
        self.initializers = {t.name: t for t in self.graph.initializer if t.name not in set(self.input_names)}
        self.real_inputs = [i for i in self.graph.input if i.name not in {t.name for t in self.graph.initializer}]
        self._const_cache: dict[str, np.ndarray | None] = {}

    def node_label(self, node: onnx.NodeProto) -> str:
        return node_label(node)

    # ---- constants -------------------------------------------------------------------------------
    def constant(self, name: str) -> np.ndarray | None:
        """The value of a tensor that does not depend on any graph input, else None."""
        if not name:
            return None
        if name in self._const_cache:
            return self._const_cache[name]
        self._const_cache[name] = None  # guards cycles in malformed graphs
        value = self._evaluate(name)
        self._const_cache[name] = value
        return value

    def _evaluate(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None or node.op_type in _NONDETERMINISTIC or node.domain not in ("", "ai.onnx"):
            return None
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            return None
        values = {}
        for i in node.input:
            if i:
                v = self.constant(i)
                if v is None:
                    return None
                values[i] = v
        if sum(v.size for v in values.values()) > _MAX_CONST_ELEMENTS:
            return None
        results = run_node(node, values, self.opset)
        if results is None:
            return None
        for out, value in zip(node.output, results):
            if out and out != name:
                self._const_cache[out] = value
        return results[list(node.output).index(name)]  # type: ignore[return-value]

    # ---- layout ----------------------------------------------------------------------------------
    def perms_to_conv(self, name: str, rank: int) -> list[list[int]] | None:
        """The Transposes (perms, in order) on the data path from ``name`` to the first Conv that reads it as its
        image; None when no Conv is reached. Only image data is followed: a Shape read, or an operand such as
        Resize sizes, Pad amounts or a Reshape target, is not a path of the pixels."""
        seen: set[int] = set()

        def walk(tensor: str, depth: int) -> list[list[int]] | None:
            if depth > 64:  # preprocessing chains are short; do not walk a whole network
                return None
            for node in self.consumers.get(tensor, []):
                positions = [i for i, x in enumerate(node.input) if x == tensor]
                data = _DATA_INPUTS.get(node.op_type)
                if node.op_type in _SHAPE_READERS or (data is not None and not set(positions) & set(data)) \
                        or id(node) in seen:
                    continue
                seen.add(id(node))
                if node.op_type == "Conv":
                    return []
                for out in (o for o in node.output if o):
                    rest = walk(out, depth + 1)
                    if rest is not None:
                        if node.op_type == "Transpose":
                            return [list(attrs(node).get("perm", list(range(rank))[::-1]))] + rest
                        return rest
            return None

        return walk(name, 0)

    def channel_axis(self, name: str, rank: int) -> int:
        """The input axis that becomes the first Conv's channel axis (1) through the Transposes on the way:
        1 for NCHW inputs, 3 for NHWC ones (a Transpose to NCHW), anything else the exporter wrote; 1 when no
        Conv is reached."""
        perms = self.perms_to_conv(name, rank) or []
        for axis in range(rank):
            pos = axis
            for perm in perms:
                if len(perm) != rank:
                    return 1
                pos = perm.index(pos)
            if pos == 1:
                return axis
        return 1

    # ---- shapes ----------------------------------------------------------------------------------
    @cached_property
    def shapes(self) -> dict[str, list[int | str | None]]:
        """Inferred shapes by tensor name (int, symbolic name or None per dim)."""
        # inferred from the inputs alone: a recorded value_info is stale when a user made a dimension dynamic
        skeleton = graph_io.skeleton(self.model, value_info=False)
        try:
            inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - inference is best effort; missing shapes mean "dynamic"
            inferred = skeleton
        out: dict[str, list[int | str | None]] = {}
        g = inferred.graph
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                out[vi.name] = [_dim(d) for d in vi.type.tensor_type.shape.dim]
        for t in self.graph.initializer:
            out.setdefault(t.name, list(t.dims))
        return out


# the inputs that carry image data (the rest are operands: sizes, pads, targets, indices, weights); ops not
# listed carry data in every input
_DATA_INPUTS: dict[str, tuple[int, ...]] = {
    op: (0,) for op in ("Conv", "Resize", "Upsample", "Pad", "Reshape", "Slice", "Expand", "Tile", "Gather",
                        "GatherND", "Squeeze", "Unsqueeze", "Transpose", "Split", "Cast", "BatchNormalization",
                        "Clip", "AveragePool", "MaxPool", "Flatten")}
_DATA_INPUTS.update({"ScatterND": (0, 2), "ScatterElements": (0, 2), "Where": (1, 2)})
_SHAPE_READERS = {"Shape", "Size"}


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    """An int, a symbolic name, or None when dynamic: a negative dim_value (paddle2onnx and some hand-built
    models write -1) is a dynamic dimension, not a size."""
    if d.HasField("dim_value"):
        return int(d.dim_value) if d.dim_value >= 0 else None
    if d.HasField("dim_param") and d.dim_param:
        return d.dim_param
    return None


def run_node(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list[np.ndarray | None] | None:
    from onnx.reference import ReferenceEvaluator

    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in values.items()]
    outputs = [helper.make_value_info(o, onnx.TypeProto()) for o in node.output if o]
    graph = helper.make_graph([node], "const", [], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, {})
    except Exception:  # noqa: BLE001 - an op the evaluator cannot run is simply not a known constant
        return None
    it = iter(results)
    return [np.asarray(next(it)) if o else None for o in node.output]
