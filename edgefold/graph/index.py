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


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if d.HasField("dim_value"):
        return int(d.dim_value)
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
