"""Ops that commute with a per-channel affine map: they are re-applied to the raw tensor (transposes, pools,
resizes, pads), and Shape reads of the normalised tensor."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from edgefold.folding.ops.base import NodeCtx, Step, _norm_axis, _raw, _with
from edgefold.folding.plan import Lin, RawOp
from edgefold.graph.index import attrs


def transpose(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    perm = list(ctx.attrs.get("perm", list(range(lin.rank))[::-1]))
    out = ctx.single_output(lin)
    step = _raw(ctx, lin, out, axis=perm.index(lin.axis))
    frame = None if lin.frame is None else tuple(lin.frame[p] for p in perm)
    return dataclasses.replace(step, outputs={out: _with(step.outputs[out], frame=frame)})


def shape(ctx: NodeCtx) -> Step:
    """``x.shape`` of a derived tensor. Decided after the walk (``kept_shape``): dropped when only removed
    nodes use it (scatter indices, Expand targets), re-applied to the raw tensor when kept nodes read it."""
    lin = ctx.only_data_lin()
    return Step({}, shape_read=ctx.single_output(lin))


def kept_shape(ctx: NodeCtx, lin: Lin, readers: list[onnx.NodeProto]) -> RawOp:
    """``x.shape[-2:]`` of the normalised tensor that kept nodes read (segmentation heads resize to it): the raw
    tensor has the same shape but for the channel count, so the Shape may read it when no reader uses that
    count."""
    out = ctx.single_output(lin)
    if lin.lane:
        raise ctx.refuse(f"its shape feeds {ctx.index.node_label(readers[0])}, which is kept; the shape of a "
                         f"selected channel has no raw counterpart", lin)
    a = ctx.attrs
    start = _norm_axis(int(a.get("start", 0)), lin.rank)
    end = _norm_axis(int(a.get("end", lin.rank)), lin.rank) if "end" in a else lin.rank
    if lin.affine.out_channels != lin.affine.in_channels and start <= lin.axis < end:
        channel = lin.axis - start  # position of the channel count in the shape vector
        for reader in readers:
            if not _skips_position(ctx, reader, out, channel, end - start):
                raise ctx.refuse(f"its shape feeds {ctx.index.node_label(reader)}, which may use the channel "
                                 f"count; only spatial dimensions of the normalised tensor can be read", lin)
    return RawOp(ctx.node_id, ((0, lin.raw),), (out,), keep_outputs=True)


def _skips_position(ctx: NodeCtx, reader: onnx.NodeProto, vector: str, position: int, length: int) -> bool:
    """A Gather or Slice of a shape vector that never picks ``position``."""
    if reader.op_type == "Gather" and reader.input[0] == vector and int(attrs(reader).get("axis", 0)) == 0:
        idx = ctx.index.constant(reader.input[1])
        return idx is not None and position not in {int(i) for i in np.asarray(idx).reshape(-1)}
    if reader.op_type == "Slice" and reader.input[0] == vector and ctx.index.opset >= 10:
        consts = [ctx.index.constant(reader.input[i]) if len(reader.input) > i and reader.input[i] else None
                  for i in range(1, 5)]
        if consts[0] is None or consts[1] is None:
            return False
        steps = consts[3] if consts[3] is not None else np.array([1])
        picked = np.arange(length)[slice(int(consts[0].reshape(-1)[0]), int(consts[1].reshape(-1)[0]),
                                     int(np.asarray(steps).reshape(-1)[0]))]
        return position not in set(picked.tolist())
    return False


def _spatial_nchw(ctx: NodeCtx, lin: Lin) -> None:
    if lin.axis != 1:
        raise ctx.refuse(f"pools over NCHW but the channels are on axis {lin.axis}", lin)


def average_pool(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    _spatial_nchw(ctx, lin)
    a = ctx.attrs
    padded = any(a.get("pads", [])) or a.get("auto_pad", b"NOTSET") in (b"SAME_UPPER", b"SAME_LOWER")
    if padded and a.get("count_include_pad", 0):
        raise ctx.refuse("averages zero padding into the border (count_include_pad=1); the padded zeros are "
                         "not raw zeros", lin)
    return _raw(ctx, lin, ctx.single_output(lin))


def global_average_pool(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    _spatial_nchw(ctx, lin)
    return _raw(ctx, lin, ctx.single_output(lin))


def max_pool(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    _spatial_nchw(ctx, lin)
    if not lin.affine.is_monotone_per_channel():
        raise ctx.refuse("is a max over channels that mix or flip raw channels (max does not commute)", lin)
    return _raw(ctx, lin, ctx.single_output(lin))


def _resize(ctx: NodeCtx, scale_pos: int, sizes_pos: int | None) -> Step:
    lin = ctx.only_data_lin()
    a = ctx.attrs
    mode = a.get("mode", b"nearest").decode()
    if a.get("coordinate_transformation_mode", b"") == b"tf_crop_and_resize":
        raise ctx.refuse("extrapolates with a constant in the normalised domain", lin)
    if mode not in ("nearest", "linear", "bilinear", "cubic"):
        raise ctx.refuse(f"mode {mode} is not a weighted average", lin)
    out = ctx.single_output(lin)
    scales = ctx.const_in(scale_pos) if ctx.input(scale_pos) else None
    axes = a.get("axes")
    full_axes = list(range(lin.rank)) if axes is None else [_norm_axis(x, lin.rank) for x in axes]
    if scales is not None and scales.size:
        if lin.axis in full_axes and scales.reshape(-1)[full_axes.index(lin.axis)] != 1:
            raise ctx.refuse("resizes the channel axis", lin)
        return _raw(ctx, lin, out)
    if sizes_pos is not None and ctx.input(sizes_pos):
        sizes = ctx.require_const(sizes_pos, "sizes").astype(np.int64).reshape(-1).copy()
        if lin.axis in full_axes:
            pos = full_axes.index(lin.axis)
            if sizes[pos] != lin.affine.out_channels:
                raise ctx.refuse("resizes the channel axis", lin)
            sizes[pos] = lin.affine.in_channels
            return _raw(ctx, lin, out, patched=((sizes_pos, sizes),))
        return _raw(ctx, lin, out)
    raise ctx.refuse("has neither constant scales nor constant sizes", lin)


def upsample(ctx: NodeCtx) -> Step:
    """Upsample (opsets 7-9): scales are input 1."""
    return _resize(ctx, 1, None)


def resize_v10(ctx: NodeCtx) -> Step:
    """Resize-10: scales are input 1."""
    return _resize(ctx, 1, None)


def resize_v11(ctx: NodeCtx) -> Step:
    """Resize-11 and later: roi, scales, sizes are inputs 1-3."""
    return _resize(ctx, 2, 3)


def pad_v2(ctx: NodeCtx) -> Step:
    """Pad-2: pads and value are attributes."""
    return _pad(ctx, np.asarray(ctx.attrs["pads"]), np.asarray(ctx.attrs.get("value", 0.0)))


def pad_v11(ctx: NodeCtx) -> Step:
    """Pad-11 and later: pads and the constant value are inputs."""
    pads = ctx.require_const(1, "pads").astype(np.int64).reshape(-1)
    return _pad(ctx, pads, ctx.const_in(2) if ctx.input(2) else np.asarray(0.0))


def pad_v18(ctx: NodeCtx) -> Step:
    """Pad-18: an optional axes input, which is not folded."""
    if ctx.input(3):
        raise ctx.refuse("pads selected axes (axes input) - not supported", ctx.lin_in(0))
    return pad_v11(ctx)


def _pad(ctx: NodeCtx, pads: np.ndarray, value: np.ndarray | None) -> Step:
    lin = ctx.only_data_lin()
    mode = ctx.attrs.get("mode", b"constant").decode()
    if pads[lin.axis] or pads[lin.axis + lin.rank]:
        raise ctx.refuse("pads the channel axis", lin)
    if mode != "constant":
        return _raw(ctx, lin, ctx.single_output(lin))
    if value is None or np.any(np.asarray(value) != 0):
        raise ctx.refuse("pads with a non-zero constant in the normalised domain, which is not a raw pixel value", lin)
    # zero padding (Keras ZeroPadding2D, explicit SAME padding): the same as the conv's own padding
    if lin.axis != 1 or lin.rank != 4 or pads[0] or pads[4] or np.any(pads < 0):
        raise ctx.refuse("zero-pads other than the spatial axes of an NCHW tensor", lin)
    add = (int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7]))
    old = lin.zero_pads or (0, 0, 0, 0)
    return Step({ctx.single_output(lin): _with(lin, zero_pads=tuple(a + b for a, b in zip(old, add)))})


