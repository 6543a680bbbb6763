"""Recognisers: one pure function per op, from a node and its abstract inputs to plan data, grouped by family
(base: the framework; channels; lanes; spatial; conv). Each takes a ``NodeCtx`` and returns a ``Step`` (the Lin
values of the outputs, plus a raw op to re-apply or a terminal conv) or raises ``Refusal`` naming the node.
The registry below is a literal dict; a new op is one function in its family and one line here.
"""
from __future__ import annotations

from collections.abc import Callable

from edgefold.fold import border  # noqa: F401 - tests patch ops.border.plan_conv
from edgefold.fold.ops.base import NodeCtx, Refusal, Step, per_channel
from edgefold.fold.ops.channels import (
    arithmetic,
    batch_norm,
    cast,
    concat,
    expand,
    gather,
    gather_nd,
    identity,
    slice_,
    split,
    tile,
)
from edgefold.fold.ops.conv import conv
from edgefold.fold.ops.lanes import reshape, scatter_elements, scatter_nd, squeeze, unsqueeze, where
from edgefold.fold.ops.spatial import (
    average_pool,
    global_average_pool,
    kept_shape,
    max_pool,
    pad,
    resize,
    shape,
    transpose,
)

__all__ = ["NodeCtx", "Refusal", "Step", "per_channel", "kept_shape", "LANE_OPS", "RECOGNISERS"]

LANE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Cast", "Identity", "Unsqueeze", "Expand", "Reshape", "Shape",
                      "Where"})

RECOGNISERS: dict[str, Callable[[NodeCtx], Step]] = {
    "Add": arithmetic, "Sub": arithmetic, "Mul": arithmetic, "Div": arithmetic,
    "Cast": cast, "Identity": identity, "BatchNormalization": batch_norm,
    "Concat": concat, "Tile": tile, "Expand": expand, "Gather": gather, "GatherND": gather_nd, "Slice": slice_,
    "Split": split, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Reshape": reshape,
    "ScatterElements": scatter_elements, "ScatterND": scatter_nd, "Where": where,
    "Transpose": transpose, "Shape": shape,
    "AveragePool": average_pool, "GlobalAveragePool": global_average_pool, "MaxPool": max_pool,
    "Resize": resize, "Upsample": resize, "Pad": pad,
    "Conv": conv,
}
