"""Fixing the spatial size of an image model's dynamic inputs (a deployment at one camera resolution)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from edgefold.errors import UsageError

if TYPE_CHECKING:
    from edgefold.graph.index import GraphIndex


def spatial_axes(dims: list) -> tuple[int, int]:
    """(H, W) axes of a rank-4 image input: NHWC when the last axis is a fixed 1 or 3 and axis 1 is not."""
    def fixed_channels(d: onnx.TensorShapeProto.Dimension) -> bool:
        return d.HasField("dim_value") and d.dim_value in (1, 3, 4)
    if fixed_channels(dims[3]) and not fixed_channels(dims[1]):
        return 1, 2
    return 2, 3


def graph_spatial_axes(index: GraphIndex, name: str, dims: list) -> tuple[int, int]:
    """(H, W) axes of a rank-4 input decided by the graph - the Transposes between it and the first Conv -
    and by the fixed axes only when no Conv reads it."""
    if index.perms_to_conv(name, 4) is None:
        return spatial_axes(dims)
    return {1: (2, 3), 3: (1, 2)}.get(index.channel_axis(name, 4), spatial_axes(dims))


def specialise(model: onnx.ModelProto, size: tuple[int, int]) -> onnx.ModelProto:
    """A copy whose rank-4 inputs have H x W fixed to ``size`` (dims already fixed must agree; a negative
    dim_value is dynamic)."""
    from edgefold.graph.index import GraphIndex

    index = GraphIndex(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    initializers = {t.name for t in out.graph.initializer}
    touched = False
    for vi in out.graph.input:
        if vi.name in initializers or not vi.type.tensor_type.HasField("shape"):
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != 4:
            continue
        for axis, value in zip(graph_spatial_axes(index, vi.name, list(dims)), size):
            d = dims[axis]
            if d.HasField("dim_value") and d.dim_value >= 0 and d.dim_value != value:
                raise UsageError(f"input '{vi.name}' has a fixed size {d.dim_value} on axis {axis}, not {value}; "
                                 f"leave that axis out of --input-size / --shapes")
            d.Clear()
            d.dim_value = value
        touched = True
    if not touched:
        raise UsageError("--input-size: the model has no rank-4 image input")
    del out.graph.value_info[:]  # stale dynamic shapes; re-inferred where needed
    return out


def set_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy with the named inputs' shapes fixed (``--shape NAME:1x1x2048x2448``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {vi.name: vi for vi in out.graph.input}
    for name, dims in shapes.items():
        if name not in by_name:
            raise UsageError(f"--shape names input '{name}', but the model's inputs are "
                             f"{', '.join(by_name) or 'none'}")
        vi = by_name[name]
        old = vi.type.tensor_type.shape.dim
        if len(old) != len(dims):
            raise UsageError(f"--shape {name}: {len(dims)} dims given, the input has {len(old)}")
        for d, value in zip(old, dims):
            if d.HasField("dim_value") and d.dim_value != value:
                raise UsageError(f"--shape {name}: dimension {d.dim_value} is fixed in the model, not {value}")
            d.Clear()
            d.dim_value = value
    del out.graph.value_info[:]
    return out
