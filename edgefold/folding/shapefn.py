"""Tensors that depend on the input only through its shape, evaluated at trial input sizes.

In-place channel assignment exports its index tensors this way: the legacy exporter builds ScatterND
indices from ``Shape -> Gather -> Range -> ... -> Concat``, the dynamo exporter ScatterElements indices from
``Expand(c, Shape(update))``; Expand and Reshape targets of a channel lane are shapes of the lane. None of
these is a constant when H, W or the batch are dynamic, but each is a function of the input's size only.
Evaluating it at two different trial sizes (every dynamic dimension changed) tells what it is for every
size. Pure: reads the GraphIndex and the walk's Lin values, never edits anything.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from edgefold.folding.plan import Lin
from edgefold.graph.index import GraphIndex, attrs, run_node

_MAX_ELEMENTS = 1 << 20  # shape arithmetic is small; anything larger is image data, not an index
_MAX_DEPTH = 200
TRIAL_VALUES = ((3, 5, 7, 11), (4, 6, 9, 13))  # per trial, values for the input's dynamic dimensions


class NotShapeOnly(Exception):
    """The tensor depends on pixel values (or on something this evaluator cannot follow)."""


def trial_inputs(dims: list) -> list[tuple[int, ...]]:
    """Concrete input shapes: one if every dimension is static, else two with every dynamic one changed."""
    if all(isinstance(d, int) for d in dims):
        return [tuple(int(d) for d in dims)]
    trials = []
    for values in TRIAL_VALUES:
        it = iter(values * 4)
        trials.append(tuple(int(d) if isinstance(d, int) else next(it) for d in dims))
    return trials


def lin_shape(lin: Lin, input_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape of the tensor a Lin describes, at a concrete input shape (None if a spatial op changed it)."""
    if lin.frame is None:
        return None
    return tuple(lin.affine.out_channels if f < 0 else input_shape[f] for f in lin.frame)


class ShapeEval:
    """Values of shape-only tensors at one trial input shape."""

    def __init__(self, index: GraphIndex, input_name: str, input_shape: tuple[int, ...],
                 lin: Mapping[str, Lin]) -> None:
        self.index, self.input_name, self.input_shape, self.lin = index, input_name, input_shape, lin
        self._cache: dict[str, np.ndarray] = {}

    def value(self, name: str, depth: int = 0) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        const = self.index.constant(name)
        if const is not None:
            return const
        if name in self.lin or name == self.input_name or depth > _MAX_DEPTH:
            raise NotShapeOnly(name)
        node = self.index.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx"):
            raise NotShapeOnly(name)
        if node.op_type == "Shape":
            result = [self._shape_of(node, depth)]
        else:
            values = {i: self.value(i, depth + 1) for i in node.input if i}
            if sum(v.size for v in values.values()) > _MAX_ELEMENTS:
                raise NotShapeOnly(name)
            ran = run_node(node, values, self.index.opset)
            if ran is None:
                raise NotShapeOnly(name)
            result = ran  # type: ignore[assignment]
        for out, v in zip(node.output, result):
            if out and v is not None:
                self._cache[out] = np.asarray(v)
        return self._cache[name]

    def _shape_of(self, node: onnx.NodeProto, depth: int) -> np.ndarray:
        src = node.input[0]
        if src in self.lin:
            shape = lin_shape(self.lin[src], self.input_shape)
            if shape is None:
                raise NotShapeOnly(src)
        elif src == self.input_name:
            shape = self.input_shape
        else:
            shape = self.value(src, depth + 1).shape
        a = attrs(node)
        full = np.asarray(shape, dtype=np.int64)
        start, end = int(a.get("start", 0)), int(a.get("end", len(full)))
        return full[slice(start, end if "end" in a else None)]


def evaluate(index: GraphIndex, input_name: str, trials: list[tuple[int, ...]], lin: Mapping[str, Lin],
             name: str) -> list[np.ndarray] | None:
    """``name`` at each trial input shape, or None if it is not a function of the input's shape alone."""
    try:
        return [ShapeEval(index, input_name, t, lin).value(name) for t in trials]
    except NotShapeOnly:
        return None
