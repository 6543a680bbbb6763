"""Recognisers: one pure function per op, from a node and its abstract inputs to plan data, grouped by family
(base: the framework; channels; lanes; spatial; conv). Each takes a ``NodeCtx`` and returns a ``Step`` (the Lin
values of the outputs, plus a raw op to re-apply or a terminal conv) or raises ``Refusal`` naming the node.
The registry below is a literal dict; a new op is one function in its family and one line here.
"""
from __future__ import annotations

from collections.abc import Callable

from edgefold.folding import border  # noqa: F401 - tests patch ops.border.plan_conv
from edgefold.folding.ops.base import NodeCtx, Refusal, Step, per_channel
from edgefold.folding.ops.channels import (
    arithmetic,
    batch_norm,
    cast,
    concat,
    expand,
    gather,
    gather_nd,
    identity,
    slice_v1,
    slice_v10,
    split,
    tile,
)
from edgefold.folding.ops.conv import conv
from edgefold.folding.ops.lanes import (
    reshape,
    scatter_elements,
    scatter_nd,
    squeeze_v1,
    squeeze_v13,
    unsqueeze_v1,
    unsqueeze_v13,
    where,
)
from edgefold.folding.ops.spatial import (
    average_pool,
    global_average_pool,
    kept_shape,
    max_pool,
    pad_v2,
    pad_v11,
    pad_v18,
    resize_v10,
    resize_v11,
    shape,
    transpose,
    upsample,
)

__all__ = ["NodeCtx", "Refusal", "Step", "per_channel", "kept_shape", "LANE_OPS", "RECOGNISERS", "recogniser"]

LANE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Cast", "Identity", "Unsqueeze", "Expand", "Reshape", "Shape",
                      "Where"})

# op -> {opset the variant applies from: recogniser}; operands that moved from attributes to inputs get a variant
RECOGNISERS: dict[str, dict[int, Callable[[NodeCtx], Step]]] = {
    "Add": {1: arithmetic}, "Sub": {1: arithmetic}, "Mul": {1: arithmetic}, "Div": {1: arithmetic},
    "Cast": {1: cast}, "Identity": {1: identity}, "BatchNormalization": {1: batch_norm},
    "Concat": {1: concat}, "Tile": {1: tile}, "Expand": {1: expand}, "Gather": {1: gather}, "GatherND": {1: gather_nd},
    "Slice": {1: slice_v1, 10: slice_v10}, "Split": {1: split},
    "Squeeze": {1: squeeze_v1, 13: squeeze_v13}, "Unsqueeze": {1: unsqueeze_v1, 13: unsqueeze_v13},
    "Reshape": {1: reshape}, "ScatterElements": {1: scatter_elements}, "ScatterND": {1: scatter_nd}, "Where": {1: where},
    "Transpose": {1: transpose}, "Shape": {1: shape},
    "AveragePool": {1: average_pool}, "GlobalAveragePool": {1: global_average_pool}, "MaxPool": {1: max_pool},
    "Resize": {10: resize_v10, 11: resize_v11}, "Upsample": {7: upsample}, "Pad": {2: pad_v2, 11: pad_v11, 18: pad_v18},
    "Conv": {1: conv},
}


def recogniser(op_type: str, opset: int) -> Callable[[NodeCtx], Step] | None:
    """The variant of ``op_type`` for a model of this opset: the entry with the highest version <= opset."""
    versions = RECOGNISERS.get(op_type)
    if not versions:
        return None
    since = max((v for v in versions if v <= opset), default=min(versions))
    return versions[since]
