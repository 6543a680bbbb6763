"""Preprocessing written channel by channel (issue 15): a selected channel without its axis (a lane), and the
ops that give it its axis back - Unsqueeze, Reshape, in-place ScatterElements/ScatterND, Where."""
from __future__ import annotations

import numpy as np

from edgefold.core.affine import ChannelAffine
from edgefold.folding import shapefn
from edgefold.folding.ops.base import NodeCtx, Step, _norm_axis, _with, per_channel
from edgefold.folding.plan import Lin


def _lane(lin: Lin, affine: ChannelAffine) -> Lin:
    """The selected channel without its axis (``x[:, c]``)."""
    frame = None if lin.frame is None else tuple(f for f in lin.frame if f >= 0)
    return _with(lin, affine, lane=True, rank=lin.rank - 1, frame=frame)


def _unlane(lin: Lin) -> Lin:
    """A lane with its channel axis back (size 1) where it was."""
    frame = None if lin.frame is None else lin.frame[:lin.axis] + (-1,) + lin.frame[lin.axis:]
    return _with(lin, lane=False, rank=lin.rank + 1, frame=frame)


def _axes_attr(ctx: NodeCtx) -> np.ndarray | None:
    """Squeeze/Unsqueeze before opset 13: ``axes`` is an attribute."""
    axes = ctx.attrs.get("axes")
    return None if axes is None else np.asarray(axes)


def _axes_input(ctx: NodeCtx) -> np.ndarray | None:
    """Squeeze/Unsqueeze from opset 13: ``axes`` is an (optional) input."""
    return ctx.require_const(1, "axes") if ctx.input(1) else None


def _normalised(axes: np.ndarray | None, rank: int) -> list[int] | None:
    return None if axes is None else sorted(_norm_axis(int(a), rank) for a in np.asarray(axes).reshape(-1))


def _unsqueeze(ctx: NodeCtx, axes_of) -> Step:  # noqa: ANN001 - _axes_attr or _axes_input
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    if not lin.lane or _normalised(axes_of(ctx), lin.rank + 1) != [lin.axis]:
        raise ctx.refuse("adds an axis to the normalised tensor; only putting a selected channel back on its "
                         "channel axis is folded", lin)
    return Step({out: _unlane(lin)})


def _squeeze(ctx: NodeCtx, axes_of) -> Step:  # noqa: ANN001
    lin = ctx.only_data_lin()
    out = ctx.single_output(lin)
    if lin.lane or _normalised(axes_of(ctx), lin.rank) != [lin.axis] or lin.affine.out_channels != 1:
        raise ctx.refuse("removes an axis of the normalised tensor other than a single channel", lin)
    return Step({out: _lane(lin, lin.affine)})


def unsqueeze_v1(ctx: NodeCtx) -> Step:
    return _unsqueeze(ctx, _axes_attr)


def unsqueeze_v13(ctx: NodeCtx) -> Step:
    return _unsqueeze(ctx, _axes_input)


def squeeze_v1(ctx: NodeCtx) -> Step:
    return _squeeze(ctx, _axes_attr)


def squeeze_v13(ctx: NodeCtx) -> Step:
    return _squeeze(ctx, _axes_input)


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


