"""Ops that act on the channel axis: per-pixel arithmetic, casts, normalisers, channel selections, stacks and
replications (each a change of the per-pixel affine map)."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.core.affine import ChannelAffine
from edgefold.folding.ops.base import INTEGER_TYPES, NodeCtx, Step, _norm_axis, _raw, _with, per_channel
from edgefold.folding.ops.lanes import _lane
from edgefold.folding.plan import Lin, RawOp


# ---- channel-affine ops ---------------------------------------------------------------------------
def arithmetic(ctx: NodeCtx) -> Step:
    op = ctx.node.op_type
    a, b = ctx.lin_in(0), ctx.lin_in(1)
    out = ctx.single_output(a or b)  # type: ignore[arg-type]
    if a is not None and b is not None:
        if op not in ("Add", "Sub") or a.raw != b.raw or a.axis != b.axis or a.rank != b.rank or a.lane != b.lane:
            raise ctx.refuse(f"{op} of two tensors derived from the input is not a per-pixel affine map", a)
        c = max(a.affine.out_channels, b.affine.out_channels)
        aa, bb = a.affine.broadcast_to(c), b.affine.broadcast_to(c)
        sign = 1.0 if op == "Add" else -1.0
        merged = ChannelAffine(aa.matrix + sign * bb.matrix, aa.offset + sign * bb.offset)
        return Step({out: _with(a, merged, via=a.via + b.via)}, arithmetic=True)
    lin = a if a is not None else b
    assert lin is not None
    lin_first = a is not None
    if not lin.is_float:
        if lin.int_range is None:  # float16 / float64 inputs
            raise ctx.refuse(f"{op} computes in a float type other than float32; fold the float32 model "
                             f"(edgefold build makes the FP16 engine from it)", lin)
        raise ctx.refuse(f"{op} on an integer tensor wraps around; cast the input to float first", lin)
    k = per_channel(ctx, ctx.require_const(1 if lin_first else 0, f"{op} operand"), lin)
    if op == "Add":
        aff = lin.affine.scale_shift(np.ones_like(k), k)
    elif op == "Sub":
        aff = lin.affine.scale_shift(np.ones_like(k), -k) if lin_first else lin.affine.scale_shift(-np.ones_like(k), k)
    elif op == "Mul":
        aff = lin.affine.scale_shift(k, np.zeros_like(k))
    else:  # Div
        if not lin_first:
            raise ctx.refuse("dividing a constant by the image is not affine", lin)
        if np.any(k == 0):
            raise ctx.refuse("divides by zero", lin)
        aff = lin.affine.scale_shift(1.0 / k, np.zeros_like(k))
    return Step({out: _with(lin, aff)}, arithmetic=True)


def cast(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    to = ctx.attrs["to"]
    out = ctx.single_output(lin)
    if to == onnx.TensorProto.FLOAT:
        return Step({out: _with(lin, is_float=True, int_range=None)})
    if not lin.is_float and lin.int_range is not None and to in INTEGER_TYPES:
        info = np.iinfo(onnx.helper.tensor_dtype_to_np_dtype(to))
        if info.min <= lin.int_range[0] and lin.int_range[1] <= info.max:
            return Step({out: lin})  # every pixel value survives (e.g. uint8 -> int64 -> uint8 around a Concat)
    name = onnx.TensorProto.DataType.Name(to) if to in onnx.TensorProto.DataType.values() else f"type {to}"
    raise ctx.refuse(f"casts to {name}; only casts to FLOAT (or integer casts that "
                     f"keep every pixel value) are exact", lin)


def identity(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    return Step({ctx.single_output(lin): lin})


def batch_norm(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    a = ctx.attrs
    if a.get("training_mode", 0):
        raise ctx.refuse("is in training mode", lin)
    if lin.axis != 1:
        raise ctx.refuse(f"normalises axis 1, but the channels are on axis {lin.axis}", lin)
    scale, bias, mean, var = (ctx.require_const(i, n).astype(np.float64)
                              for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    n = lin.affine.out_channels
    if any(v.size not in (1, n) for v in (scale, bias, mean, var)):
        raise ctx.refuse(f"has {scale.size}/{bias.size}/{mean.size}/{var.size} scale/bias/mean/var values for a "
                         f"{n}-channel input (a malformed model: they must match the channels)", lin)
    eps = float(a.get("epsilon", 1e-5))
    # ORT evaluates scale / sqrt(var + eps) in float32; do the same so the fold matches to rounding
    k = (scale.astype(np.float32) / np.sqrt(var.astype(np.float32) + np.float32(eps))).astype(np.float64)
    aff = lin.affine.scale_shift(k, bias - mean * k)
    return Step({ctx.single_output(lin): _with(lin, aff)}, arithmetic=True)


def concat(ctx: NodeCtx) -> Step:
    ins = [ctx.lin.get(n) for n in ctx.node.input]
    first = next(x for x in ins if x is not None)
    if any(x is None for x in ins):
        raise ctx.refuse("concatenates the normalised tensor with other data", first)
    lins: list[Lin] = [x for x in ins if x is not None]
    axis = _norm_axis(int(ctx.attrs["axis"]), first.rank)
    if any(x.axis != first.axis or x.rank != first.rank for x in lins):
        raise ctx.refuse("concatenates tensors with different layouts", first)
    via = tuple(v for x in lins for v in x.via)
    out = ctx.single_output(first)
    if axis == first.axis:
        if all(x.raw == first.raw for x in lins):
            return Step({out: _with(first, ChannelAffine.stack([x.affine for x in lins]), via=via)})
        raw_op = RawOp(ctx.node_id, tuple((i, x.raw) for i, x in enumerate(lins)), (out,))
        return Step({out: _with(first, ChannelAffine.block_diagonal([x.affine for x in lins]), raw=out, via=via,
                                frame=None)},
                    raw_op=raw_op)
    if all(x.affine.matrix.shape == first.affine.matrix.shape and np.array_equal(x.affine.matrix, first.affine.matrix)
           and np.array_equal(x.affine.offset, first.affine.offset) for x in lins):
        raw_op = RawOp(ctx.node_id, tuple((i, x.raw) for i, x in enumerate(lins)), (out,))
        return Step({out: _with(first, raw=out, via=via, frame=None)}, raw_op=raw_op)
    raise ctx.refuse("concatenates differently normalised tensors along a spatial axis", first)


def tile(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    reps = ctx.require_const(1, "repeats").astype(np.int64).reshape(-1)
    out = ctx.single_output(lin)
    if reps.size != lin.rank:
        raise ctx.refuse("repeats do not match the tensor rank", lin)
    spatial = [r for ax, r in enumerate(reps) if ax != lin.axis and r != 1]
    if reps[lin.axis] != 1 and spatial:
        raise ctx.refuse("tiles channels and space at once", lin)
    if reps[lin.axis] != 1:
        rows = np.tile(np.arange(lin.affine.out_channels), int(reps[lin.axis]))
        return Step({out: _with(lin, lin.affine.select(rows))})
    return _raw(ctx, lin, out)


def expand(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    targets = ctx.shape_only(1)
    if targets is None:
        raise ctx.refuse(f"shape '{ctx.input(1)}' is neither a constant nor a function of the input's size", lin)
    trial_shapes = ctx.shapes_of(lin) if ctx.const_in(1) is None else None
    in_shapes: list = trial_shapes or [ctx.index.shapes.get(ctx.input(0)) or [None] * lin.rank] * len(targets)
    counts = set()
    for target, in_shape in zip(targets, in_shapes):
        t = np.asarray(target).astype(np.int64).reshape(-1)
        if t.size > lin.rank:
            raise ctx.refuse("adds axes to the tensor", lin)
        t = np.concatenate([np.ones(lin.rank - t.size, np.int64), t])
        channels = lin.affine.out_channels
        for ax, d in enumerate(t):
            if ax == lin.axis and not lin.lane:
                if d not in (1, channels) and channels != 1:
                    raise ctx.refuse(f"expands {channels} channels to {d}", lin)
                channels = max(int(d), channels)
            elif d != 1 and in_shape[ax] != d:
                raise ctx.refuse(f"expands axis {ax} to {d}; only the channel axis may be broadcast", lin)
        counts.add(channels)
    if len(counts) != 1:
        raise ctx.refuse("expands to a channel count that depends on the input size", lin)
    return Step({out: _with(lin, lin.affine.broadcast_to(counts.pop()))})


def gather(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    idx = ctx.require_const(1, "indices").astype(np.int64)
    axis = _norm_axis(int(ctx.attrs.get("axis", 0)), lin.rank)
    out = ctx.single_output(lin)
    if idx.ndim == 0 and axis == lin.axis and not lin.lane:  # x[:, c]: one channel, its axis dropped
        c = lin.affine.out_channels
        if not -c <= int(idx) < c:
            raise ctx.refuse(f"index {int(idx)} out of range for {c} channels", lin)
        return Step({out: _lane(lin, lin.affine.select(np.array([int(idx) % c])))})
    if idx.ndim != 1:
        raise ctx.refuse("gathers with non-1-D indices along a non-channel axis (changes the rank)", lin)
    if axis == lin.axis:
        c = lin.affine.out_channels
        if np.any(idx >= c) or np.any(idx < -c):
            raise ctx.refuse(f"indices out of range for {c} channels", lin)
        return Step({out: _with(lin, lin.affine.select(np.where(idx < 0, idx + c, idx)))})
    return _raw(ctx, lin, out)


def gather_nd(ctx: NodeCtx) -> Step:
    """GatherND with (k, 1) indices selects along axis 0 (the dynamo exporter's x[:, [2, 1, 0]] transposes
    channels to axis 0 first)."""
    lin = ctx.only_data_lin()
    idx = ctx.require_const(1, "indices").astype(np.int64)
    out = ctx.single_output(lin)
    if int(ctx.attrs.get("batch_dims", 0)) != 0 or idx.ndim != 2 or idx.shape[1] != 1:
        raise ctx.refuse("gathers with multi-axis indices", lin)
    if lin.axis == 0:
        c = lin.affine.out_channels
        rows = idx[:, 0]
        if np.any(rows >= c) or np.any(rows < -c):
            raise ctx.refuse(f"indices out of range for {c} channels", lin)
        return Step({out: _with(lin, lin.affine.select(np.where(rows < 0, rows + c, rows)))})
    return _raw(ctx, lin, out)


def _size_independent(ctx: NodeCtx, i: int, what: str, lin: Lin) -> list[int]:
    """A constant, or a shape computation that gives the same value at every input size (the legacy
    exporter's ``x.chunk(3, 1)`` computes its Slice ends from the channel count)."""
    values = ctx.shape_only(i)
    if values is None or any(not np.array_equal(v, values[0]) for v in values):
        raise ctx.refuse(f"{what} '{ctx.input(i)}' is not a constant, so the map is not affine", lin)
    return np.asarray(values[0]).astype(np.int64).reshape(-1).tolist()


def _slice_attrs(ctx: NodeCtx, lin: Lin) -> tuple[list[int], list[int], list[int], list[int]]:
    """Slice-1: starts, ends and axes are attributes; no steps."""
    a = ctx.attrs
    starts, ends = list(a["starts"]), list(a["ends"])
    axes = list(a.get("axes", range(len(starts))))
    return starts, ends, [_norm_axis(x, lin.rank) for x in axes], [1] * len(starts)


def _slice_inputs(ctx: NodeCtx, lin: Lin) -> tuple[list[int], list[int], list[int], list[int]]:
    """Slice-10 and later: starts, ends, axes, steps are inputs (starts/ends may be shape computations)."""
    starts, ends = (_size_independent(ctx, i, what, lin) for i, what in ((1, "starts"), (2, "ends")))
    axes = ctx.require_const(3, "axes").astype(np.int64).tolist() if ctx.input(3) else list(range(len(starts)))
    steps = ctx.require_const(4, "steps").astype(np.int64).tolist() if ctx.input(4) else [1] * len(starts)
    return starts, ends, [_norm_axis(x, lin.rank) for x in axes], steps


def _slice(ctx: NodeCtx, params) -> Step:  # noqa: ANN001 - one of the two readers above
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    starts, ends, axes, steps = params(ctx, lin)
    if lin.axis not in axes:
        return _raw(ctx, lin, out)
    if len(axes) != 1:
        raise ctx.refuse("slices channels and space at once; split it into two Slice nodes", lin)
    rows = np.arange(lin.affine.out_channels)[slice(starts[0], ends[0], steps[0])]
    if rows.size == 0:
        raise ctx.refuse("selects no channel", lin)
    return Step({out: _with(lin, lin.affine.select(rows))})


def slice_v1(ctx: NodeCtx) -> Step:
    return _slice(ctx, _slice_attrs)


def slice_v10(ctx: NodeCtx) -> Step:
    return _slice(ctx, _slice_inputs)


def split(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    axis = _norm_axis(int(ctx.attrs.get("axis", 0)), lin.rank)
    outs = list(ctx.node.output)
    if axis != lin.axis:
        return _raw(ctx, lin, *outs)
    c = lin.affine.out_channels
    if ctx.input(1):
        sizes = ctx.require_const(1, "split").astype(np.int64).tolist()
    elif "split" in ctx.attrs:
        sizes = list(ctx.attrs["split"])
    else:
        n = len(outs)
        per = -(-c // n)
        sizes = [per] * (n - 1) + [c - per * (n - 1)]
    if sum(sizes) != c or len(sizes) != len(outs):
        raise ctx.refuse(f"split sizes {sizes} do not cover {c} channels", lin)
    result = {}
    start = 0
    for name, size in zip(outs, sizes):
        if name:
            result[name] = _with(lin, lin.affine.select(np.arange(start, start + size)))
        start += size
    return Step(result)


