"""Recognisers: one pure function per op family, from a node and its abstract inputs to plan data.

Each takes a ``NodeCtx`` and returns a ``Step`` (the Lin values of the outputs, plus a raw op to re-apply
or a terminal conv) or raises ``Refusal`` naming the node. The registry at the bottom is a literal dict.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from edgefold.fold import border
from edgefold.fold.affine import ChannelAffine
from edgefold.fold.plan import ConvFold, Lin, RawOp
from edgefold.graph.index import GraphIndex, attrs

INTEGER_TYPES = {onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
                 onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64}


class Refusal(Exception):
    def __init__(self, message: str, via: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.via = via


@dataclass(frozen=True)
class Step:
    outputs: dict[str, Lin]
    raw_op: RawOp | None = None
    terminal: ConvFold | None = None
    arithmetic: bool = False


@dataclass
class NodeCtx:
    index: GraphIndex
    node: onnx.NodeProto
    node_id: int
    lin: dict[str, Lin]
    terminal_ids: frozenset[int]
    border_mode: str

    @property
    def label(self) -> str:
        return self.index.node_label(self.node)

    @property
    def attrs(self) -> dict:
        return attrs(self.node)

    def input(self, i: int) -> str:
        return self.node.input[i] if i < len(self.node.input) else ""

    def lin_in(self, i: int) -> Lin | None:
        return self.lin.get(self.input(i))

    def const_in(self, i: int) -> np.ndarray | None:
        name = self.input(i)
        return self.index.constant(name) if name else None

    def refuse(self, why: str, lin: Lin | None = None) -> Refusal:
        return Refusal(f"node {self.label}: {why}", lin.via if lin else ())

    def require_const(self, i: int, what: str) -> np.ndarray:
        v = self.const_in(i)
        if v is None:
            raise self.refuse(f"{what} '{self.input(i)}' is not a constant, so the map is not affine")
        return v

    def only_data_lin(self, lin_positions: tuple[int, ...] = (0,)) -> Lin:
        for i, name in enumerate(self.node.input):
            if name in self.lin and i not in lin_positions:
                raise self.refuse(f"the normalised tensor feeds input {i}, which cannot be folded")
        lin = self.lin_in(lin_positions[0])
        assert lin is not None
        return lin

    def single_output(self, lin: Lin) -> str:
        outs = [o for o in self.node.output if o]
        if len(outs) != 1:
            raise self.refuse("has extra outputs", lin)
        return outs[0]


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def per_channel(ctx: NodeCtx, const: np.ndarray, lin: Lin) -> np.ndarray:
    """A constant operand as a per-channel vector (length 1 or C'), or a refusal if it varies in space."""
    c = np.asarray(const, dtype=np.float64)
    if c.ndim > lin.rank:
        raise ctx.refuse(f"constant of shape {c.shape} has more axes than the tensor (rank {lin.rank})", lin)
    shape = (1,) * (lin.rank - c.ndim) + c.shape
    for ax, d in enumerate(shape):
        if ax != lin.axis and d != 1:
            raise ctx.refuse(f"constant of shape {c.shape} varies along axis {ax}, not only over channels "
                             f"(axis {lin.axis}): a per-pixel mean image is not supported", lin)
    vec = c.reshape(-1)
    if vec.size not in (1, lin.affine.out_channels) and lin.affine.out_channels != 1:
        raise ctx.refuse(f"constant has {vec.size} channels, the tensor {lin.affine.out_channels}", lin)
    return vec


def _with(lin: Lin, affine: ChannelAffine | None = None, **kw) -> Lin:
    return Lin(raw=kw.get("raw", lin.raw), affine=affine if affine is not None else lin.affine,
               axis=kw.get("axis", lin.axis), rank=kw.get("rank", lin.rank),
               is_float=kw.get("is_float", lin.is_float), via=kw.get("via", lin.via),
               int_range=kw.get("int_range", lin.int_range), zero_pads=kw.get("zero_pads", lin.zero_pads))


# ---- channel-affine ops ---------------------------------------------------------------------------
def arithmetic(ctx: NodeCtx) -> Step:
    op = ctx.node.op_type
    a, b = ctx.lin_in(0), ctx.lin_in(1)
    out = ctx.single_output(a or b)  # type: ignore[arg-type]
    if a is not None and b is not None:
        if op not in ("Add", "Sub") or a.raw != b.raw or a.axis != b.axis or a.rank != b.rank:
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
    raise ctx.refuse(f"casts to {onnx.TensorProto.DataType.Name(to)}; only casts to FLOAT (or integer casts that "
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
        raise ctx.refuse("normalises axis 1, but the channels are on axis {lin.axis}", lin)
    scale, bias, mean, var = (ctx.require_const(i, n).astype(np.float64)
                              for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
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
        return Step({out: _with(first, ChannelAffine.block_diagonal([x.affine for x in lins]), raw=out, via=via)},
                    raw_op=raw_op)
    if all(x.affine.matrix.shape == first.affine.matrix.shape and np.array_equal(x.affine.matrix, first.affine.matrix)
           and np.array_equal(x.affine.offset, first.affine.offset) for x in lins):
        raw_op = RawOp(ctx.node_id, tuple((i, x.raw) for i, x in enumerate(lins)), (out,))
        return Step({out: _with(first, raw=out, via=via)}, raw_op=raw_op)
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
    target = ctx.require_const(1, "shape").astype(np.int64).reshape(-1)
    out = ctx.single_output(lin)
    if target.size > lin.rank:
        raise ctx.refuse("adds axes to the tensor", lin)
    target = np.concatenate([np.ones(lin.rank - target.size, np.int64), target])
    in_shape = ctx.index.shapes.get(ctx.input(0)) or [None] * lin.rank
    channels = lin.affine.out_channels
    for ax, t in enumerate(target):
        if ax == lin.axis:
            if t not in (1, channels) and channels != 1:
                raise ctx.refuse(f"expands {channels} channels to {t}", lin)
            channels = max(int(t), channels)
        elif t != 1 and in_shape[ax] != t:
            raise ctx.refuse(f"expands axis {ax} to {t}; only the channel axis may be broadcast", lin)
    return Step({out: _with(lin, lin.affine.broadcast_to(channels))})


def gather(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    idx = ctx.require_const(1, "indices").astype(np.int64)
    axis = _norm_axis(int(ctx.attrs.get("axis", 0)), lin.rank)
    out = ctx.single_output(lin)
    if idx.ndim != 1:
        raise ctx.refuse("gathers with non-1-D indices (changes the rank)", lin)
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


def _slice_params(ctx: NodeCtx, lin: Lin) -> tuple[list[int], list[int], list[int], list[int]]:
    if ctx.index.opset < 10:
        a = ctx.attrs
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = ctx.require_const(1, "starts").astype(np.int64).tolist()
        ends = ctx.require_const(2, "ends").astype(np.int64).tolist()
        axes = ctx.require_const(3, "axes").astype(np.int64).tolist() if ctx.input(3) else list(range(len(starts)))
        steps = ctx.require_const(4, "steps").astype(np.int64).tolist() if ctx.input(4) else [1] * len(starts)
    return starts, ends, [_norm_axis(x, lin.rank) for x in axes], steps


def slice_(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    starts, ends, axes, steps = _slice_params(ctx, lin)
    if lin.axis not in axes:
        return _raw(ctx, lin, out)
    if len(axes) != 1:
        raise ctx.refuse("slices channels and space at once; split it into two Slice nodes", lin)
    rows = np.arange(lin.affine.out_channels)[slice(starts[0], ends[0], steps[0])]
    if rows.size == 0:
        raise ctx.refuse("selects no channel", lin)
    return Step({out: _with(lin, lin.affine.select(rows))})


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


def transpose(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    perm = list(ctx.attrs.get("perm", list(range(lin.rank))[::-1]))
    out = ctx.single_output(lin)
    return _raw(ctx, lin, out, axis=perm.index(lin.axis))


def shape(ctx: NodeCtx) -> Step:
    """``x.shape[-2:]`` of the normalised tensor (segmentation heads resize to it): the raw tensor has the
    same shape but for the channel count, so the Shape may read it when no reader uses that count."""
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    a = ctx.attrs
    start = _norm_axis(int(a.get("start", 0)), lin.rank)
    end = _norm_axis(int(a.get("end", lin.rank)), lin.rank) if "end" in a else lin.rank
    if lin.affine.out_channels != lin.affine.in_channels and start <= lin.axis < end:
        channel = lin.axis - start  # position of the channel count in the shape vector
        for reader in ctx.index.consumers.get(out, []):
            if not _skips_position(ctx, reader, out, channel, end - start):
                raise ctx.refuse(f"its shape feeds {ctx.index.node_label(reader)}, which may use the channel "
                                 f"count; only spatial dimensions of the normalised tensor can be read", lin)
    raw_op = RawOp(ctx.node_id, ((0, lin.raw),), (out,), keep_outputs=True)
    return Step({}, raw_op=raw_op)


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


# ---- spatial ops that commute with a per-channel affine map -------------------------------------
def _raw(ctx: NodeCtx, lin: Lin, *outs: str, axis: int | None = None,
         patched: tuple[tuple[int, np.ndarray], ...] = ()) -> Step:
    raw_op = RawOp(ctx.node_id, ((0, lin.raw),), tuple(outs), patched)
    new_axis = lin.axis if axis is None else axis
    return Step({o: _with(lin, raw=o, axis=new_axis) for o in outs if o}, raw_op=raw_op)


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


def resize(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    a = ctx.attrs
    mode = a.get("mode", b"nearest").decode()
    if a.get("coordinate_transformation_mode", b"") == b"tf_crop_and_resize":
        raise ctx.refuse("extrapolates with a constant in the normalised domain", lin)
    if mode not in ("nearest", "linear", "bilinear", "cubic"):
        raise ctx.refuse(f"mode {mode} is not a weighted average", lin)
    out = ctx.single_output(lin)
    if ctx.node.op_type == "Upsample" or ctx.index.opset < 11:
        scale_pos, sizes_pos = (1, None)
    else:
        scale_pos, sizes_pos = (2, 3)
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


def pad(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    mode = ctx.attrs.get("mode", b"constant").decode()
    pads = (ctx.require_const(1, "pads").astype(np.int64).reshape(-1) if ctx.index.opset >= 11
            else np.asarray(ctx.attrs["pads"]))
    if ctx.index.opset >= 18 and ctx.input(3):
        raise ctx.refuse("pads selected axes (axes input) - not supported", lin)
    if pads[lin.axis] or pads[lin.axis + lin.rank]:
        raise ctx.refuse("pads the channel axis", lin)
    if mode != "constant":
        return _raw(ctx, lin, ctx.single_output(lin))
    value = ctx.const_in(2) if ctx.index.opset >= 11 and ctx.input(2) else np.asarray(ctx.attrs.get("value", 0.0))
    if value is None or np.any(np.asarray(value) != 0):
        raise ctx.refuse("pads with a non-zero constant in the normalised domain, which is not a raw pixel value", lin)
    # zero padding (Keras ZeroPadding2D, explicit SAME padding): the same as the conv's own padding
    if lin.axis != 1 or lin.rank != 4 or pads[0] or pads[4] or np.any(pads < 0):
        raise ctx.refuse("zero-pads other than the spatial axes of an NCHW tensor", lin)
    add = (int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7]))
    old = lin.zero_pads or (0, 0, 0, 0)
    return Step({ctx.single_output(lin): _with(lin, zero_pads=tuple(a + b for a, b in zip(old, add)))})


# ---- convolutions -------------------------------------------------------------------------------
def conv(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    a = ctx.attrs
    w = ctx.require_const(1, "weight")
    bias = ctx.const_in(2) if ctx.input(2) else None
    if ctx.input(2) and bias is None:
        raise ctx.refuse(f"bias '{ctx.input(2)}' is not a constant", lin)
    if w.ndim != 4:
        raise ctx.refuse(f"is a {w.ndim - 2}-D convolution; only 2-D convolutions are folded", lin)
    if lin.axis != 1 or lin.rank != 4:
        raise ctx.refuse(f"reads a tensor whose channels are on axis {lin.axis}, not 1 (NCHW)", lin)
    group = int(a.get("group", 1))
    if w.shape[1] * group != lin.affine.out_channels:
        raise ctx.refuse(f"expects {w.shape[1] * group} input channels, the tensor has "
                         f"{lin.affine.out_channels}", lin)
    out = ctx.single_output(lin)
    pointwise = (w.shape[2:] == (1, 1) and all(s == 1 for s in a.get("strides", [1, 1]))
                 and not any(a.get("pads", [])) and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
                 and lin.zero_pads is None)
    override = None
    if lin.zero_pads is not None:  # merge the Pad node into the conv's padding
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise ctx.refuse("reads a zero-padded tensor with auto_pad SAME; give the conv explicit pads", lin)
        own = list(a.get("pads", [0, 0, 0, 0])) if a.get("auto_pad", b"NOTSET") != b"VALID" else [0, 0, 0, 0]
        t, lft, bt, r = lin.zero_pads
        a = {**a, "pads": [own[0] + t, own[1] + lft, own[2] + bt, own[3] + r], "auto_pad": b"NOTSET"}
        override = {"pads": list(a["pads"])}
    if pointwise and ctx.node_id not in ctx.terminal_ids:
        matrix = border.grouped_matrix(w[:, :, 0, 0].astype(np.float64), group)
        offset = bias.astype(np.float64) if bias is not None else np.zeros(w.shape[0])
        return Step({out: _with(lin, lin.affine.then(matrix, offset), via=lin.via + (ctx.node_id,))},
                    arithmetic=True)
    in_shape = ctx.index.shapes.get(ctx.input(0))
    spatial = tuple(in_shape[2:]) if in_shape and len(in_shape) == 4 else (None, None)
    if lin.zero_pads is not None:  # the conv now reads the unpadded tensor
        t, lft, bt, r = lin.zero_pads
        spatial = tuple(d - p0 - p1 if isinstance(d, int) else None
                        for d, p0, p1 in zip(spatial, (t, lft), (bt, r)))
    fold = border.plan_conv(ctx.node_id, ctx.node.name or out, lin, w, bias, a, spatial, ctx.border_mode,
                            ctx.index.opset)
    if override is not None:
        fold = dataclasses.replace(fold, attrs_override={**(fold.attrs_override or {}), **override})
    return Step({}, terminal=fold)


RECOGNISERS: dict[str, Callable[[NodeCtx], Step]] = {
    "Add": arithmetic, "Sub": arithmetic, "Mul": arithmetic, "Div": arithmetic,
    "Cast": cast, "Identity": identity, "BatchNormalization": batch_norm,
    "Concat": concat, "Tile": tile, "Expand": expand, "Gather": gather, "GatherND": gather_nd, "Slice": slice_,
    "Split": split,
    "Transpose": transpose, "Shape": shape,
    "AveragePool": average_pool, "GlobalAveragePool": global_average_pool, "MaxPool": max_pool,
    "Resize": resize, "Upsample": resize, "Pad": pad,
    "Conv": conv,
}
