"""Names in a graph. ONNX node names are optional and need not be unique (converters leave them empty or repeat
them), so nothing is identified by one: a node is known by its first output tensor (tensor names are unique),
its index or the object. Names edgefold adds come from ``FreshNames``, which never gives out one the graph
already uses; ``with_unique_node_names`` makes the private copy that a library which only takes node names
(onnxruntime's quantiser, the FP16 converter) works on, and onnxruntime, which refuses repeated node names.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import onnx


def node_key(node: onnx.NodeProto) -> str:
    """What identifies a node: its first non-empty output (unique in a graph, as every tensor name is)."""
    return next((o for o in node.output if o), "")


def node_label(node: onnx.NodeProto) -> str:
    """A node as a message names it: its name when it has one, else its op and output."""
    return f"'{node.name}' ({node.op_type})" if node.name else f"<unnamed {node.op_type} -> {node_key(node)}>"


def _graphs(graph: onnx.GraphProto) -> Iterable[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                yield from _graphs(sub)


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every node and tensor name in the graph and its subgraphs."""
    names: set[str] = set()
    for g in _graphs(graph):
        names.update(v.name for v in (*g.input, *g.output, *g.value_info))
        names.update(t.name for t in g.initializer)
        names.update(t.values.name for t in g.sparse_initializer)
        for n in g.node:
            names.add(n.name)
            names.update(n.input)
            names.update(n.output)
    names.discard("")
    return names


class FreshNames:
    """Names for what edgefold adds to one graph: never one the graph uses, nor one given out before (so two
    stems, two chains or two passes on the same graph cannot collide)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.taken: set[str] = set()
        self.parents: set[str] = set()  # every "a" and "a/b" of a taken "a/b/c": P is free if no name starts "P/"
        self.prefixes: set[str] = set()  # given out by ``prefix``: every name under them is the caller's
        for name in used_names(graph):
            self._take(name)

    def _take(self, name: str) -> None:
        self.taken.add(name)
        self.parents.update(name[:i] for i, ch in enumerate(name) if ch == "/")

    def _free(self, name: str) -> bool:
        return bool(name) and name not in self.taken and name not in self.parents and \
            not any(name[:i] in self.prefixes for i, ch in enumerate(name) if ch == "/")

    def name(self, wanted: str) -> str:
        """``wanted`` if free, else ``wanted_2``, ``wanted_3``, ... (names under a ``prefix`` are its owner's: one
        that falls under one is flattened, ``a/b`` -> ``a_b``)."""
        if any(wanted[:i] in self.prefixes for i, ch in enumerate(wanted) if ch == "/"):
            wanted = wanted.replace("/", "_")
        out, k = wanted, 1
        while not self._free(out):
            k += 1
            out = f"{wanted}_{k}"
        self._take(out)
        return out

    def prefix(self, wanted: str) -> str:
        """A prefix P (``wanted`` if free, else ``wanted_2``, ...) under which every ``P/...`` is free."""
        out, k = wanted, 1
        while not out or out in self.parents or out in self.prefixes or \
                any(out[:i] in self.prefixes for i, ch in enumerate(out) if ch == "/"):
            k += 1
            out = f"{wanted}_{k}"
        self.prefixes.add(out)
        self.parents.update(out[:i] for i, ch in enumerate(out) if ch == "/")
        return out


def repeated_node_names(graph: onnx.GraphProto) -> bool:
    """Whether two nodes of one graph (or subgraph) share a name (onnxruntime refuses such a model)."""
    return any(c > 1 for g in _graphs(graph) for name, c in Counter(n.name for n in g.node).items() if name)


def with_unique_node_names(model: onnx.ModelProto, fill_empty: bool = True) -> onnx.ModelProto:
    """``model`` itself when every node already has a name of its own, else a copy where each unnamed node (with
    ``fill_empty``) and each repeat of a name after its first gets a fresh one (``NAME_INDEX``, ``OP_INDEX``);
    every other name stays."""
    if not (fill_empty and any(not n.name for g in _graphs(model.graph) for n in g.node)) \
            and not repeated_node_names(model.graph):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    fresh = FreshNames(out.graph)
    for g in _graphs(out.graph):
        seen: set[str] = set()
        for i, n in enumerate(g.node):
            if (not n.name and fill_empty) or (n.name and n.name in seen):
                n.name = fresh.name(f"{n.name or n.op_type}_{i}")
            seen.add(n.name)
    return out


def names_by_key(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's name by its ``node_key`` (for a model whose names are unique: ``with_unique_node_names``)."""
    return {node_key(n): n.name for n in model.graph.node}
