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

from edgefold.core.affine import ChannelAffine
from edgefold.fold import border, shapefn
from edgefold.fold.plan import BorderScheme, ConvFold, Lin, RawOp
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
    # a Shape of a derived tensor: the walk decides at the end whether anything kept reads it
    shape_read: str | None = None


@dataclass
class NodeCtx:
    index: GraphIndex
    node: onnx.NodeProto
    node_id: int
    lin: dict[str, Lin]
    terminal_ids: frozenset[int]
    border_mode: str
    input_name: str = ""  # the graph input of this chain (shape-only tensors are functions of its shape)
    trials: tuple[tuple[int, ...], ...] = ()  # concrete input shapes to evaluate those at

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

    def shape_only(self, i: int) -> list[np.ndarray] | None:
        """Input ``i`` at each trial input shape when it is a constant or a function of the input's shape."""
        name = self.input(i)
        if not name or name in self.lin:
            return None
        const = self.index.constant(name)
        if const is not None:
            return [const] * max(1, len(self.trials))
        return shapefn.evaluate(self.index, self.input_name, list(self.trials), self.lin, name)

    def shapes_of(self, lin: Lin) -> list[tuple[int, ...]] | None:
        shapes = [shapefn.lin_shape(lin, t) for t in self.trials]
        return None if not shapes or any(s is None for s in shapes) else shapes  # type: ignore[return-value]

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
        if lin.lane and d != 1:
            raise ctx.refuse(f"constant of shape {c.shape} varies along axis {ax} of a channel lane (one channel "
                             f"selected with a scalar index); only scalar constants are per-pixel affine", lin)
        if ax != lin.axis and d != 1:
            raise ctx.refuse(f"constant of shape {c.shape} varies along axis {ax}, not only over channels "
                             f"(axis {lin.axis}): a per-pixel mean image is not supported", lin)
    vec = c.reshape(-1)
    if vec.size not in (1, lin.affine.out_channels) and lin.affine.out_channels != 1:
        raise ctx.refuse(f"constant has {vec.size} channels, the tensor {lin.affine.out_channels}", lin)
    return vec


def _with(lin: Lin, affine: ChannelAffine | None = None, **kw) -> Lin:
    return dataclasses.replace(lin, **kw) if affine is None else dataclasses.replace(lin, affine=affine, **kw)


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


def _lane(lin: Lin, affine: ChannelAffine) -> Lin:
    """The selected channel without its axis (``x[:, c]``)."""
    frame = None if lin.frame is None else tuple(f for f in lin.frame if f >= 0)
    return _with(lin, affine, lane=True, rank=lin.rank - 1, frame=frame)


def _unlane(lin: Lin) -> Lin:
    """A lane with its channel axis back (size 1) where it was."""
    frame = None if lin.frame is None else lin.frame[:lin.axis] + (-1,) + lin.frame[lin.axis:]
    return _with(lin, lane=False, rank=lin.rank + 1, frame=frame)


def _axes(ctx: NodeCtx, rank: int) -> list[int] | None:
    """The axes of a Squeeze/Unsqueeze (an attribute before opset 13, an input since), normalised."""
    if ctx.index.opset < 13:
        axes = ctx.attrs.get("axes")
    else:
        axes = ctx.require_const(1, "axes") if ctx.input(1) else None
    if axes is None:
        return None
    return sorted(_norm_axis(int(a), rank) for a in np.asarray(axes).reshape(-1))


def unsqueeze(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    axes = _axes(ctx, lin.rank + 1)
    if not lin.lane or axes != [lin.axis]:
        raise ctx.refuse("adds an axis to the normalised tensor; only putting a selected channel back on its "
                         "channel axis is folded", lin)
    return Step({out: _unlane(lin)})


def squeeze(ctx: NodeCtx) -> Step:
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    axes = _axes(ctx, lin.rank)
    if lin.lane or axes != [lin.axis] or lin.affine.out_channels != 1:
        raise ctx.refuse("removes an axis of the normalised tensor other than a single channel", lin)
    return Step({out: _lane(lin, lin.affine)})


def _resolved(target: np.ndarray, shape: tuple[int, ...], allowzero: bool) -> tuple[int, ...] | None:
    t = [int(d) for d in np.asarray(target).reshape(-1)]
    t = [shape[i] if d == 0 and not allowzero and i < len(shape) else d for i, d in enumerate(t)]
    if t.count(-1) > 1:
        return None
    if -1 in t:
        known = int(np.prod([d for d in t if d != -1]))
        total = int(np.prod(shape))
        if known == 0 or total % known:
            return None
        t[t.index(-1)] = total // known
    return tuple(t)


def reshape(ctx: NodeCtx) -> Step:
    """A Reshape that keeps the tensor's shape, or gives a channel lane its axis back (the legacy exporter's
    in-place assignment reshapes the updated lane to N x 1 x H x W)."""
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    targets, shapes = ctx.shape_only(1), ctx.shapes_of(lin)
    if targets is None or shapes is None:
        raise ctx.refuse("reshapes the normalised tensor to a shape that is not a function of the input's size",
                         lin)
    kinds = set()
    for target, shape in zip(targets, shapes):
        new = _resolved(target, shape, bool(ctx.attrs.get("allowzero", 0)))
        if new == shape:
            kinds.add("same")
        elif lin.lane and new == shape[:lin.axis] + (1,) + shape[lin.axis:]:
            kinds.add("channel")
        else:
            raise ctx.refuse(f"reshapes {list(shape)} to {list(new) if new else target.tolist()}, which moves "
                             f"pixels between channels or positions", lin)
    if len(kinds) != 1:
        raise ctx.refuse("reshapes differently at different input sizes", lin)
    return Step({out: _unlane(lin) if kinds == {"channel"} else lin})


def _same_layout(ctx: NodeCtx, a: Lin, b: Lin, what: str) -> None:
    if a.raw != b.raw or a.axis != b.axis or a.rank != b.rank or a.lane != b.lane:
        raise ctx.refuse(f"{what} tensors with different layouts or raw sources", a)


def _replace_rows(data: ChannelAffine, rows: list[int], update: ChannelAffine) -> ChannelAffine:
    matrix, offset = data.matrix.copy(), data.offset.copy()
    for j, c in enumerate(rows):
        matrix[c], offset[c] = update.matrix[j], update.offset[j]
    return ChannelAffine(matrix, offset)


def _scatter_operands(ctx: NodeCtx) -> tuple[Lin, Lin, str, list[np.ndarray], list, list]:
    data, update = ctx.lin_in(0), ctx.lin_in(2)
    anchor = data or update
    assert anchor is not None
    out = ctx.single_output(anchor)
    if ctx.input(1) in ctx.lin:
        raise ctx.refuse("indexes with the normalised tensor", anchor)
    if update is None:
        raise ctx.refuse("writes values not derived from the input into the normalised tensor", anchor)
    if data is None:  # torch.empty_like / zeros_like(x) filled channel by channel
        data = _filled(ctx, update)
    reduction = ctx.attrs.get("reduction", b"none")
    if (reduction.decode() if isinstance(reduction, bytes) else reduction) != "none":
        raise ctx.refuse(f"accumulates into the tensor (reduction {reduction!r})", anchor)
    if data.lane or update.lane:
        raise ctx.refuse("scatters a channel lane without its channel axis", anchor)
    if data.raw != update.raw:
        raise ctx.refuse("scatters part of a channel or moved pixels (the update went through a crop, resize or "
                         "other spatial op the tensor it is written into did not)", anchor)
    _same_layout(ctx, data, update, "scatters between")
    indices, data_shapes, update_shapes = ctx.shape_only(1), ctx.shapes_of(data), ctx.shapes_of(update)
    if indices is not None and data_shapes is None and ctx.node.op_type == "ScatterND":
        # after a spatial op the sizes are unknown, but ScatterND's own shape rule (updates = indices[:-1] +
        # data[k:]) covers whole planes; only the batch must be known to check every image is written
        static = ctx.index.shapes.get(ctx.input(0)) or []
        if static and isinstance(static[0], int):
            data_shapes = [(static[0], data.affine.out_channels) + (-1,) * (data.rank - 2)] * len(indices)
            update_shapes = [tuple(np.asarray(i).shape[:-1]) + (-1,) * (data.rank - 2) for i in indices]
    if indices is None or data_shapes is None or update_shapes is None:
        raise ctx.refuse("scatters with indices that are neither constant nor a function of the input's size",
                         anchor)
    return data, update, out, indices, data_shapes, update_shapes


def _filled(ctx: NodeCtx, update: Lin) -> Lin:
    """The tensor a scatter writes into, when it is not derived from the input's pixels but made from its
    shape (``ConstantOfShape(Shape(x))``): a constant per channel, i.e. an affine map with zero rows."""
    values = ctx.shape_only(0)
    if values is None or update.lane or update.frame is None:
        raise ctx.refuse("writes normalised values into a tensor not derived from the input", update)
    channels = {np.asarray(v).shape[update.axis] if np.asarray(v).ndim == update.rank else -1 for v in values}
    if len(channels) != 1 or -1 in channels:
        raise ctx.refuse("writes normalised values into a tensor of another layout", update)
    c = channels.pop()
    fill = ChannelAffine(np.zeros((c, update.affine.in_channels)), np.zeros(c))
    data = _with(update, fill, via=())
    vectors = []
    for v, trial in zip(values, ctx.trials):
        if tuple(np.asarray(v).shape) != shapefn.lin_shape(data, trial):
            raise ctx.refuse("writes normalised values into a tensor of another size", update)
        vectors.append(np.broadcast_to(_per_channel_values(ctx, v, data, "the tensor written into"), (c,)))
    if any(not np.array_equal(v, vectors[0]) for v in vectors):
        raise ctx.refuse("writes into a tensor whose values depend on the input size", update)
    return _with(data, ChannelAffine(fill.matrix, vectors[0].astype(np.float64)))


def _one_target(ctx: NodeCtx, per_trial: list[list[int]], channels: int, lin: Lin) -> list[int]:
    if any(t != per_trial[0] for t in per_trial):
        raise ctx.refuse("writes different channels at different input sizes", lin)
    rows = per_trial[0]
    if any(not -channels <= c < channels for c in rows):
        raise ctx.refuse(f"writes a channel outside the tensor's {channels}", lin)
    rows = [c % channels for c in rows]
    if len(set(rows)) != len(rows):
        raise ctx.refuse("writes the same channel twice (the result depends on the write order)", lin)
    return rows


def scatter_elements(ctx: NodeCtx) -> Step:
    """In-place channel assignment as the dynamo exporter writes it: ``x[:, c] = f(x[:, c])`` becomes
    ScatterElements along the channel axis with an index tensor that is ``c`` everywhere."""
    data, update, out, indices, data_shapes, update_shapes = _scatter_operands(ctx)
    axis = _norm_axis(int(ctx.attrs.get("axis", 0)), data.rank)
    if axis != data.axis:
        raise ctx.refuse(f"scatters along axis {axis}, not the channel axis {data.axis}", data)
    per_trial = []
    for idx, ds, us in zip(indices, data_shapes, update_shapes):
        idx = np.asarray(idx).astype(np.int64)
        if idx.shape != us:
            raise ctx.refuse(f"has indices of shape {list(idx.shape)} for updates of shape {list(us)}", data)
        if any(ds[a] != us[a] for a in range(data.rank) if a != axis):
            raise ctx.refuse("scatters part of a channel (the update does not cover whole channel planes)", data)
        rows = []
        for j in range(us[axis]):
            values = np.unique(np.take(idx, j, axis=axis))
            if values.size != 1:
                raise ctx.refuse("writes different channels at different pixels", data)
            rows.append(int(values[0]))
        per_trial.append(rows)
    rows = _one_target(ctx, per_trial, data.affine.out_channels, data)
    merged = _replace_rows(data.affine, rows, update.affine)
    return Step({out: _with(data, merged, via=data.via + update.via)}, arithmetic=True)


def scatter_nd(ctx: NodeCtx) -> Step:
    """In-place channel assignment as the legacy exporter writes it: ScatterND whose indices, built from the
    input's shape, are ``(n, c)`` for every image n of the batch, with N x k x H x W updates."""
    data, update, out, indices, data_shapes, update_shapes = _scatter_operands(ctx)
    if data.axis != 1 or data.rank < 3:
        raise ctx.refuse("scatters into a tensor whose channels are not on axis 1", data)
    per_trial = []
    for idx, ds, us in zip(indices, data_shapes, update_shapes):
        idx = np.asarray(idx).astype(np.int64)
        if idx.ndim != 3 or idx.shape[-1] != 2 or us != idx.shape[:2] + tuple(ds[2:]) or idx.shape[0] != ds[0]:
            raise ctx.refuse("scatters single elements or rows, not whole channel planes of every image", data)
        batch = np.arange(ds[0])
        rows = []
        for j in range(idx.shape[1]):
            if not np.array_equal(idx[:, j, 0], batch) or np.unique(idx[:, j, 1]).size != 1:
                raise ctx.refuse("writes different channels in different images of the batch", data)
            rows.append(int(idx[0, j, 1]))
        per_trial.append(rows)
    rows = _one_target(ctx, per_trial, data.affine.out_channels, data)
    merged = _replace_rows(data.affine, rows, update.affine)
    return Step({out: _with(data, merged, via=data.via + update.via)}, arithmetic=True)


def _per_channel_values(ctx: NodeCtx, value: np.ndarray, lin: Lin, what: str) -> np.ndarray:
    """A tensor that may vary only over channels (of ``lin``'s layout), as a per-channel vector."""
    m = np.asarray(value)
    if m.ndim > lin.rank:
        raise ctx.refuse(f"{what} of shape {list(m.shape)} has more axes than the tensor", lin)
    m = m.reshape((1,) * (lin.rank - m.ndim) + m.shape)
    for ax in range(lin.rank):
        if lin.lane or ax != lin.axis:
            first = np.take(m, [0], axis=ax)
            if not np.all(m == first):
                raise ctx.refuse(f"{what} varies across pixels (not a per-channel value)", lin)
            m = first
    return m.reshape(-1)


def where(ctx: NodeCtx) -> Step:
    """``Where(mask, a, b)`` with a mask that is fixed per channel: each channel is a's or b's row."""
    branches = [ctx.lin_in(1), ctx.lin_in(2)]
    lin = next(b for b in branches if b is not None) if any(branches) else ctx.lin_in(0)
    assert lin is not None
    out = ctx.single_output(lin)
    if ctx.input(0) in ctx.lin:
        raise ctx.refuse("uses the normalised tensor as a condition, which is not affine", lin)
    for b in branches:
        if b is not None:
            _same_layout(ctx, lin, b, "selects between")
    conds = ctx.shape_only(0)
    if conds is None:
        raise ctx.refuse("selects with a condition that depends on pixel values", lin)
    masks = [_per_channel_values(ctx, np.asarray(c).astype(bool), lin, "selects with a condition that") for c in conds]
    if any(m.shape != masks[0].shape or not np.array_equal(m, masks[0]) for m in masks):
        raise ctx.refuse("selects differently at different input sizes", lin)
    parts = []
    for i, b in zip((1, 2), branches):
        if b is not None:
            parts.append(b.affine)
        else:
            k = per_channel(ctx, ctx.require_const(i, "Where operand"), lin)
            parts.append(ChannelAffine(np.zeros((k.size, lin.affine.in_channels)), k))
    c = max([masks[0].size] + [p.out_channels for p in parts])
    if lin.lane and c != 1:
        raise ctx.refuse("selects several channels into a channel lane", lin)
    try:
        first, second = (p.broadcast_to(c) for p in parts)
    except ValueError:
        raise ctx.refuse("selects between tensors with different channel counts", lin) from None
    m = np.broadcast_to(masks[0], (c,))
    merged = ChannelAffine(np.where(m[:, None], first.matrix, second.matrix),
                           np.where(m, first.offset, second.offset))
    via = tuple(v for x in branches if x is not None for v in x.via)
    return Step({out: _with(lin, merged, via=via)}, arithmetic=True)


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


def _slice_params(ctx: NodeCtx, lin: Lin) -> tuple[list[int], list[int], list[int], list[int]]:
    if ctx.index.opset < 10:
        a = ctx.attrs
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = (_size_independent(ctx, i, what, lin) for i, what in ((1, "starts"), (2, "ends")))
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


# ---- spatial ops that commute with a per-channel affine map -------------------------------------
def _raw(ctx: NodeCtx, lin: Lin, *outs: str, axis: int | None = None,
         patched: tuple[tuple[int, np.ndarray], ...] = ()) -> Step:
    raw_op = RawOp(ctx.node_id, ((0, lin.raw),), tuple(outs), patched)
    new_axis = lin.axis if axis is None else axis
    return Step({o: _with(lin, raw=o, axis=new_axis, frame=None) for o in outs if o}, raw_op=raw_op)


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
    if bias is not None and bias.size != w.shape[0]:
        raise ctx.refuse(f"bias '{ctx.input(2)}' has {bias.size} values for {w.shape[0]} filters; fix the model "
                         f"(onnxruntime would reject it too)", lin)
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
    if fold.border is BorderScheme.DYNAMIC_SEPARABLE and ctx.index.opset < 11:
        raise ctx.refuse(f"reads an image whose size is dynamic (or not inferable) at opset {ctx.index.opset}; "
                         f"the exact border term is "
                         f"built from opset-11 ops: fix the size with --input-size HxW, or convert the model "
                         f"(onnx.version_converter.convert_version(model, 13))", lin)
    if override is not None:
        fold = dataclasses.replace(fold, attrs_override={**(fold.attrs_override or {}), **override})
    return Step({}, terminal=fold)


# the ops that may read a channel lane: per-pixel arithmetic and the ops that give it its channel axis back
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
