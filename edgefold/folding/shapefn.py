"""Tensors that depend on the input only through its shape, evaluated at trial input sizes.

In-place channel assignment exports its index tensors this way: the legacy exporter builds ScatterND
indices from ``Shape -> Gather -> Range -> ... -> Concat``, the dynamo exporter ScatterElements indices from
``Expand(c, Shape(update))``; Expand and Reshape targets of a channel lane are shapes of the lane. None of
these is a constant when H, W or the batch are dynamic, but each is a function of the input's size only.
Evaluating it at two different trial sizes (every dynamic dimension changed) tells what it is for every
size. Pure: reads the GraphIndex and the walk's Lin values, never edits anything.

Piecewise operands need more than two sizes: TF-style "same" padding (``ceil(h / s)`` arithmetic, clamped at
zero) changes with ``h mod s`` and for images smaller than the kernel, so a Pad's amounts are evaluated at
``probe_inputs``: every size up to 24 and a few large ones, different for each dynamic dimension.
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
PROBE_SIZES = tuple(range(1, 25)) + (31, 64, 97, 224, 225, 257)


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


def probe_inputs(dims: list) -> list[tuple[int, ...]]:
    """Concrete input shapes for a piecewise shape function: one if every dimension is static, else one per
    ``PROBE_SIZES`` entry, each dynamic dimension taking a different size (so H and W are not confused)."""
    if all(isinstance(d, int) for d in dims):
        return [tuple(int(d) for d in dims)]
    n = len(PROBE_SIZES)
    dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    return [tuple(PROBE_SIZES[(k + 7 * dynamic.index(i)) % n] if i in dynamic else int(dims[i])
                  for i in range(len(dims))) for k in range(n)]


def lin_shape(lin: Lin, input_shape: tuple[int, ...], raw: bool = False) -> tuple[int, ...] | None:
    """The shape of the tensor a Lin describes, at a concrete input shape (None if a spatial op changed it);
    ``raw``: of its raw twin, whose channel count is the map's input's."""
    if lin.frame is None:
        return None
    channels = lin.affine.in_channels if raw else lin.affine.out_channels
    return tuple(channels if f < 0 else input_shape[f] for f in lin.frame)


class ShapeEval:
    """Values of shape-only tensors at one trial input shape."""

    def __init__(self, index: GraphIndex, input_name: str, input_shape: tuple[int, ...],
                 lin: Mapping[str, Lin], raw: bool = False) -> None:
        self.index, self.input_name, self.input_shape, self.lin = index, input_name, input_shape, lin
        self.raw = raw  # Shape of a derived tensor reads its raw twin (as a kept, re-applied Shape does)
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

    def _static_shape(self, src: str) -> tuple[int, ...]:
        """A derived tensor whose frame a spatial op changed (a Resize to a computed size), in a model whose
        input is static (``--input-size``): its inferred shape; the raw twin has the map's input channel
        count. Dynamic models keep refusing it."""
        dims, declared = self.index.shapes.get(src), self.index.shapes.get(self.input_name)
        static = [d for d in (dims or []) + (declared or []) if isinstance(d, int) and d >= 0]
        if not dims or not declared or len(static) != len(dims) + len(declared):
            raise NotShapeOnly(src)
        shape = [int(d) for d in dims]  # type: ignore[arg-type]
        lin = self.lin[src]
        if self.raw and 0 <= lin.axis < len(shape):
            shape[lin.axis] = lin.affine.in_channels
        return tuple(shape)

    def _shape_of(self, node: onnx.NodeProto, depth: int) -> np.ndarray:
        src = node.input[0]
        if src in self.lin:
            shape = lin_shape(self.lin[src], self.input_shape, self.raw) or self._static_shape(src)
        elif src == self.input_name:
            shape = self.input_shape
        else:
            shape = self.value(src, depth + 1).shape
        a = attrs(node)
        full = np.asarray(shape, dtype=np.int64)
        start, end = int(a.get("start", 0)), int(a.get("end", len(full)))
        return full[slice(start, end if "end" in a else None)]


def evaluate(index: GraphIndex, input_name: str, trials: list[tuple[int, ...]], lin: Mapping[str, Lin],
             name: str, raw: bool = False) -> list[np.ndarray] | None:
    """``name`` at each trial input shape, or None if it is not a function of the input's shape alone."""
    try:
        return [ShapeEval(index, input_name, t, lin, raw).value(name) for t in trials]
    except NotShapeOnly:
        return None


def evaluate_where_defined(index: GraphIndex, input_name: str, probes: list[tuple[int, ...]],
                           lin: Mapping[str, Lin], name: str) -> tuple[list[tuple[int, ...]], list[np.ndarray]] | None:
    """(probes, values) at the probe sizes where ``name`` is defined - shape arithmetic that fails at a size
    (a crop larger than the image, a negative dimension) means the model itself cannot run there - or None
    when it is undefined at most of them (not a function of the input's shape)."""
    kept, values = [], []
    for probe in probes:
        try:
            values.append(ShapeEval(index, input_name, probe, lin).value(name))
            kept.append(probe)
        except NotShapeOnly:
            continue
    return (kept, values) if kept and 2 * len(kept) >= len(probes) else None
