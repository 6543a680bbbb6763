"""Ops that commute with a per-channel affine map: they are re-applied to the raw tensor (transposes, pools,
resizes, pads), and Shape reads of the normalised tensor."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from edgefold.folding import shapefn
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


def kept_shape(ctx: NodeCtx, lin: Lin, readers: list[onnx.NodeProto], live: frozenset[int] | set[int] = frozenset(),
               sinks: frozenset[tuple[int, int]] = frozenset()) -> RawOp:
    """``x.shape[-2:]`` of the normalised tensor that kept nodes read (segmentation heads resize to it): the raw
    tensor has the same shape but for the channel count, so the Shape may read it when no reader uses that
    count, or when the count reaches only ``sinks`` (node id, input position): operands whose channel entry
    the fold overwrites (Resize sizes computed from the shape)."""
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
            if not _skips_position(ctx, reader, out, channel, end - start) and \
                    not _channel_count_overwritten(ctx, out, live, sinks):
                raise ctx.refuse(f"its shape feeds {ctx.index.node_label(reader)}, which may use the channel "
                                 f"count; only spatial dimensions of the normalised tensor can be read", lin)
    return RawOp(ctx.node_id, ((0, lin.raw),), (out,), keep_outputs=True)


def _channel_count_overwritten(ctx: NodeCtx, vector: str, live: frozenset[int] | set[int], sinks: frozenset[tuple[int, int]]
                               ) -> bool:
    """Whether every kept use of a shape vector either does not depend on the channel count (its value is the
    same for the raw and the normalised tensor at the trial sizes) or is an operand in ``sinks``."""
    pos = {id(n): i for i, n in enumerate(ctx.index.nodes)}
    trials = list(ctx.trials)

    def evaluate(name: str, raw: bool) -> list[np.ndarray] | None:
        return shapefn.evaluate(ctx.index, ctx.input_name, trials, ctx.lin, name, raw)

    frontier, seen = [vector], {vector}
    while frontier:
        tensor = frontier.pop()
        norm, raw = evaluate(tensor, False), evaluate(tensor, True)
        if norm is None or raw is None:
            return False
        if all(np.array_equal(x, y) for x, y in zip(norm, raw)):
            continue
        for reader in ctx.index.consumers.get(tensor, []):
            rid = pos[id(reader)]
            if rid not in live or all((rid, i) in sinks for i, x in enumerate(reader.input) if x == tensor):
                continue
            outs = [o for o in reader.output if o]
            if not outs or any(evaluate(o, False) is None for o in outs):
                return False  # image data would read the channel count
            frontier.extend(o for o in outs if o not in seen)
            seen.update(outs)
    return True


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
    """Interpolation weights sum to 1 (nearest, linear, cubic, antialiased), so a Resize of the spatial axes
    commutes with a per-channel affine map; it is re-applied to the raw tensor, whose channel count differs
    when gray is replicated. Scales or sizes may be computed from the input's shape (the legacy exporter's
    ``F.interpolate(size=...)``: ``Shape -> Slice -> Concat``): their channel entry is overwritten for the raw
    tensor."""
    lin = ctx.only_data_lin()
    a = ctx.attrs
    mode = a.get("mode", b"nearest").decode()
    if a.get("coordinate_transformation_mode", b"") == b"tf_crop_and_resize":
        raise ctx.refuse("extrapolates with a constant in the normalised domain", lin)
    if mode not in ("nearest", "linear", "bilinear", "cubic"):
        raise ctx.refuse(f"mode {mode} is not a weighted average", lin)
    out = ctx.single_output(lin)
    axes = a.get("axes")
    full_axes = list(range(lin.rank)) if axes is None else [_norm_axis(x, lin.rank) for x in axes]
    channel = full_axes.index(lin.axis) if lin.axis in full_axes else None
    for pos, what, keep in ((scale_pos, "scales", 1.0), (sizes_pos, "sizes", None)):
        if pos is None or not ctx.input(pos):
            continue
        probed = ctx.shape_only_at_probes(pos)
        if probed is None:
            raise ctx.refuse(f"{what} '{ctx.input(pos)}' are neither constant nor a function of the input's size, "
                             f"so the map is not affine", lin)
        probes, values = probed
        values = [np.asarray(v).reshape(-1) for v in values]
        if not values[0].size:
            continue  # an empty scales input: the sizes decide
        same = float(lin.affine.out_channels) if keep is None else keep
        if channel is not None and any(v.size <= channel or v[channel] != same for v in values):
            raise ctx.refuse("resizes the channel axis", lin)
        constant = ctx.const_in(pos) is not None
        if constant and (channel is None or keep is not None or lin.affine.in_channels == lin.affine.out_channels):
            return _raw(ctx, lin, out)
        raw_value = np.asarray(keep if keep is not None else lin.affine.in_channels, values[0].dtype)
        if len(probes) == 1:  # a constant at this input size: the raw tensor's own operand
            fixed = values[0].copy()
            if channel is not None:
                fixed[channel] = raw_value
            return _raw(ctx, lin, out, patched=((pos, fixed),))
        if channel is None:
            return _raw(ctx, lin, out)
        mask = np.arange(values[0].size) == channel
        return _raw(ctx, lin, out, masked=((pos, mask, np.where(mask, raw_value, 0).astype(values[0].dtype)),))
    raise ctx.refuse("has neither scales nor sizes", lin)


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
    """Pad-11 and later: pads and the constant value are inputs. The pads may be computed from the input's
    size (timm's ``pad_same`` exported with dynamic H/W: ``Shape -> arithmetic -> Cast -> Concat -> Pad``)."""
    value = ctx.const_in(2) if ctx.input(2) else np.asarray(0.0)
    probed = ctx.shape_only_at_probes(1)
    if probed is None:
        raise ctx.refuse(f"pads '{ctx.input(1)}' are neither constant nor a function of the input's size, so the "
                         f"map is not affine", ctx.lin_in(0))
    probes, values = probed
    pads = [np.asarray(v).astype(np.int64).reshape(-1) for v in values]
    if all(np.array_equal(p, pads[0]) for p in pads):
        return _pad(ctx, pads[0], value)
    return _size_pad(ctx, probes, pads, value)


def _size_pad(ctx: NodeCtx, probes: list[tuple[int, ...]], pads: list[np.ndarray], value: np.ndarray | None
              ) -> Step:
    """A zero Pad whose amounts change with the input's size: recorded per probe size for the conv to merge."""
    lin = ctx.only_data_lin()
    if ctx.attrs.get("mode", b"constant").decode() != "constant" or value is None or np.any(np.asarray(value) != 0):
        raise ctx.refuse("pads by amounts computed from the input's size with a non-zero value or a non-constant "
                         "mode; fix the size with --input-size HxW", lin)
    rows = []
    for probe, p in zip(probes, pads):
        size = shapefn.lin_shape(lin, probe)
        if size is None or lin.axis != 1 or lin.rank != 4 or p.size != 8 or lin.zero_pads is not None \
                or lin.size_pads is not None or any(p[[0, 1, 4, 5]]):
            raise ctx.refuse("zero-pads by amounts computed from the input's size other than the spatial axes of "
                             "an NCHW tensor read by a Conv; fix the size with --input-size HxW", lin)
        if np.any(p < 0):  # a crop at this size: not "same" padding (an exporter that froze part of the arithmetic)
            raise ctx.refuse(f"pads by amounts computed from the input's size that are negative (a crop) at input "
                             f"size {size[2]}x{size[3]} (pads {p.tolist()}), so it is not SAME padding at every "
                             f"size; fix the size with --input-size HxW", lin)
        rows.append((size[2], size[3], int(p[2]), int(p[3]), int(p[6]), int(p[7])))
    return Step({ctx.single_output(lin): _with(lin, size_pads=tuple(rows), frame=None)})


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
    if lin.axis != 1 or lin.rank != 4 or pads[0] or pads[4] or np.any(pads < 0) or lin.size_pads is not None:
        raise ctx.refuse("zero-pads other than the spatial axes of an NCHW tensor", lin)
    add = (int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7]))
    old = lin.zero_pads or (0, 0, 0, 0)
    return Step({ctx.single_output(lin): _with(lin, zero_pads=tuple(a + b for a, b in zip(old, add)))})


