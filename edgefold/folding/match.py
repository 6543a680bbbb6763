"""Matching: walk from each graph input in topological order, abstractly interpreting every node that reads
a tensor derived from it, until each path ends in a Conv. Produces a ``FoldPlan``; never edits the graph.
"""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.core.affine import ChannelAffine, declared
from edgefold.errors import UnsupportedGraph, UsageError
from edgefold.folding import shapefn
from edgefold.folding.adapter import compose, find_adapter
from edgefold.folding.ops import LANE_OPS, NodeCtx, Refusal, kept_shape, recogniser
from edgefold.folding.options import FoldOptions
from edgefold.folding.plan import RAW_INPUT, ChainPlan, ConvFold, FoldPlan, InputContract, Lin, RawOp
from edgefold.graph.index import GraphIndex, _subgraph_reads, attrs

LAYOUTS = {1: "NCHW", 3: "NHWC", -1: "NHW"}
QUANTISERS = {"QuantizeLinear", "DynamicQuantizeLinear"}
NO_CHANNEL_AXIS = -1  # an N x H x W gray input: the graph inserts the channel axis itself


class NothingToFold(Exception):
    """An input whose path holds no preprocessing (or reaches no Conv): skipped, with the reason."""


def plan_fold(index: GraphIndex, options: FoldOptions) -> FoldPlan:
    chains: list[ChainPlan] = []
    skipped: list[tuple[str, str]] = []
    for vi in index.real_inputs:
        try:
            chains.append(plan_chain(index, vi, options))
        except NothingToFold as why:
            skipped.append((vi.name, str(why)))
    if not chains:
        reasons = "; ".join(f"input '{n}': {r}" for n, r in skipped) or "the model has no inputs"
        no_conv = bool(skipped) and all(r.startswith("no Conv reads it") for _, r in skipped)
        hint = (" - edgefold folds preprocessing into a first convolution, and no input of this model reaches one"
                if no_conv else "" if options.declares_normalisation else
                " - for a bare 3-channel model, declare what it expects with --gray --mean --std --scale")
        raise UnsupportedGraph(f"no preprocessing to fold ({reasons}){hint}")
    return FoldPlan(tuple(chains), tuple(skipped))


def _dtype_name(elem_type: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name


def _channel_insertion(index: GraphIndex, name: str) -> tuple[list[int], int, str, bool] | None:
    """(cast node ids, id of the node that inserts axis 1, its output, whether it is float) for an
    N x H x W input that reaches ``Unsqueeze(axes=[1])`` (or a constant Reshape to N x 1 x H x W)
    through Casts only."""
    pos = {id(n): i for i, n in enumerate(index.nodes)}
    casts: list[int] = []
    tensor, is_float = name, False
    while True:
        readers = index.consumers.get(tensor, [])
        if len(readers) != 1:
            return None
        node = readers[0]
        if node.op_type == "Cast":
            casts.append(pos[id(node)])
            is_float = attrs(node).get("to") == onnx.TensorProto.FLOAT
            tensor = node.output[0]
            continue
        out_shape = index.shapes.get(node.output[0]) or []
        if node.op_type == "Unsqueeze":
            axes = attrs(node).get("axes") if index.opset < 13 else index.constant(node.input[1]) \
                if len(node.input) > 1 else None
            ok = axes is not None and [int(a) for a in np.asarray(axes).reshape(-1)] == [1]
        elif node.op_type == "Reshape":
            target = index.constant(node.input[1])
            ok = target is not None and target.size == 4 and int(target.reshape(-1)[1]) == 1 and \
                len(out_shape) == 4 and out_shape[1] == 1
        else:
            return None
        return (casts, pos[id(node)], node.output[0], is_float) if ok else None


def _reaches_conv(index: GraphIndex, name: str) -> bool:
    """Whether any Conv lies downstream of a tensor (a gain or mask input feeding features does not count)."""
    frontier, seen = [name], {name}
    while frontier:
        for node in index.consumers.get(frontier.pop(), []):
            if node.op_type == "Conv":
                return True
            for out in node.output:
                if out and out not in seen:
                    seen.add(out)
                    frontier.append(out)
    return False


def plan_chain(index: GraphIndex, vi: onnx.ValueInfoProto, options: FoldOptions) -> ChainPlan:
    name = vi.name
    shape = index.shapes.get(name)
    elem = vi.type.tensor_type.elem_type
    if shape is None or len(shape) not in (3, 4):
        raise NothingToFold(f"not an image tensor (shape {shape})")
    if any(d == 0 for d in shape):
        raise UsageError(f"input '{name}' has a dimension of size 0 (shape {shape}); an image needs at least one "
                         f"channel and pixel: fix the model's input shape")
    if elem == onnx.TensorProto.INT8:  # pixels 128..255 do not fit: the original cannot have taken raw frames
        raise UsageError(f"input '{name}' is int8, which cannot hold pixel values 128-255; fold a model whose "
                         f"input is uint8 or float (a quantised model: fold the float one, then quantise it)")
    quantiser = next((n for n in index.consumers.get(name, []) if n.op_type in QUANTISERS), None)
    if quantiser is not None:
        raise UnsupportedGraph(f"input '{name}' is already quantised by {index.node_label(quantiser)}: fold the "
                               f"float model, then quantise it (edgefold build --int8 does)")
    unsqueeze = _channel_insertion(index, name) if len(shape) == 3 else None
    channels: int | str | None
    if unsqueeze is not None:  # an N x H x W gray input that the graph gives a channel axis
        axis, channels = NO_CHANNEL_AXIS, 1
    elif len(shape) != 4:
        raise NothingToFold(f"not an image tensor (shape {shape})")
    else:
        axis = index.channel_axis(name, len(shape))
        channels = shape[axis]
    if not isinstance(channels, int):
        raise UsageError(f"input '{name}': the channel count (axis {axis}) is not fixed ({channels}); "
                         f"export the model with a static channel dimension")
    order = options.channels
    if order in ("rgb", "bgr") and channels != 3:
        if options.camera:
            raise UsageError(f"--pixel-format {options.camera} feeds a 3-channel colour model; input '{name}' has "
                             f"{channels} channel{'s' if channels != 1 else ''} (for a gray model use Mono8/10/12/16)")
        raise UsageError(f"input '{name}' has {channels} channel{'s' if channels != 1 else ''}; --{order} needs 3")
    raw_channels = 1 if order == "gray" else channels
    if options.declares_normalisation and elem != onnx.TensorProto.FLOAT:
        raise UsageError(f"input '{name}' is {_dtype_name(elem)}: it takes raw pixels, and --mean/--std/--scale "
                         f"describe a float input the model expects normalised; drop them (preprocessing in the "
                         f"graph is found and folded without flags)")
    if channels == 1 and order in (None, "gray") and not options.declares_normalisation and not options.raw_offset \
            and unsqueeze is None:
        adapter = find_adapter(index, name)
        if adapter is not None:
            return _adapter_chain(index, vi, options, shape, elem, adapter)
    input_affine = declared(channels, raw_channels, order or "as-original",
                            options.mean or (0.0,), options.std or (1.0,), options.scale or 1.0)
    # the convs will read y = x + raw_offset, so the original input is A (y - raw_offset) + b
    conv_view = ChannelAffine(input_affine.matrix,
                              input_affine.offset - input_affine.matrix.sum(axis=1) * options.raw_offset)
    int_range = None
    if elem != onnx.TensorProto.FLOAT and np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).kind in "iu":
        info = np.iinfo(onnx.helper.tensor_dtype_to_np_dtype(elem))
        int_range = (int(info.min), int(info.max))
    frame = tuple(-1 if i == axis else i for i in range(len(shape)))
    start = Lin(RAW_INPUT, conv_view, axis, len(shape), elem == onnx.TensorProto.FLOAT, int_range=int_range,
                frame=frame)
    walk_from, lead_removed, lead_raw = name, [], []
    if unsqueeze is not None:
        casts, node_id, tensor, is_float = unsqueeze
        walk_from, lead_removed = tensor, casts + [node_id]
        lead_raw = [RawOp(node_id, ((0, RAW_INPUT),), (tensor,))]
        start = Lin(tensor, conv_view, 1, 4, is_float or start.is_float, int_range=None if is_float else int_range,
                    frame=(0, -1, 1, 2))
    trials = tuple(shapefn.trial_inputs(list(shape)))

    terminal_ids: frozenset[int] = frozenset()
    while True:
        try:
            walk = _walk(index, walk_from, start, terminal_ids, options.border, name, trials)
            break
        except Refusal as refusal:
            if not refusal.via:
                if not _reaches_conv(index, name):
                    raise NothingToFold("no Conv reads it (not an image input)") from None
                raise UnsupportedGraph(f"cannot fold input '{name}': {refusal}") from None
            terminal_ids |= {refusal.via[-1]}  # that 1x1 conv must be the fold target after all
    removed, raw_ops, convs, arithmetic = walk
    removed, raw_ops = lead_removed + removed, lead_raw + raw_ops
    if not convs:
        raise NothingToFold("no Conv reads it")
    if (options.mean is not None or options.std is not None) and arithmetic and not options.compose:
        raise UsageError(f"input '{name}' is already normalised inside the graph; drop --mean/--std (--scale alone "
                         f"is fine: a model that normalises 0..1 inputs in its graph, fed 0..255 pixels), or add "
                         f"--compose if the graph expects normalised input and re-normalises it (torchvision's "
                         f"transform_input)")
    changes = (not conv_view.is_identity() or any(not c.affine.is_identity() for c in convs)
               or any(c.weight.shape != c.old_weight_shape for c in convs))
    if not changes:
        raise NothingToFold("no preprocessing between it and the first Conv")

    dtype = options.input_dtype or _dtype_name(elem)
    a = np.concatenate([c.affine.matrix.reshape(-1) for c in convs])
    b = np.concatenate([c.affine.offset for c in convs])
    if dtype == "uint8" or _dtype_name(elem) == "uint8":
        pixel_max = 255.0
    elif options.scale is not None:
        pixel_max = float(options.scale)
    else:
        pixel_max = 255.0 if (np.abs(a).max() <= 0.1 or np.abs(b).max() >= 10) else 1.0
    new_shape = list(shape)
    if axis != NO_CHANNEL_AXIS:
        new_shape[axis] = raw_channels
    contract = InputContract(
        name=options.input_name or name, dtype=dtype, layout=LAYOUTS.get(axis, f"channels-axis-{axis}"),
        channels=raw_channels,
        channel_order="gray" if raw_channels == 1 else (order or "as-original"),
        shape=tuple(new_shape), channel_axis=axis, pixel_range=(0.0, pixel_max))
    return ChainPlan(name, _dtype_name(elem), tuple(shape), input_affine, contract, tuple(removed),
                     tuple(raw_ops), tuple(convs), arithmetic, options.raw_offset)


def _adapter_chain(index: GraphIndex, vi: onnx.ValueInfoProto, options: FoldOptions, shape: list, elem: int,
                   adapter: tuple[list[int], int, int]) -> ChainPlan:
    removed, adapter_id, backbone_id = adapter
    fold, _ = compose(index, adapter_id, backbone_id, options.border)
    dtype = options.input_dtype or _dtype_name(elem)
    contract = InputContract(name=options.input_name or vi.name, dtype=dtype, layout="NCHW", channels=1,
                             channel_order="gray", shape=tuple(shape), channel_axis=1, pixel_range=(0.0, 255.0))
    return ChainPlan(vi.name, _dtype_name(elem), tuple(shape), ChannelAffine.identity(1), contract, tuple(removed),
                     (), (fold,), False)


def _walk(index: GraphIndex, name: str, start: Lin, terminal_ids: frozenset[int], border_mode: str,
          input_name: str = "", trials: tuple[tuple[int, ...], ...] = ()
          ) -> tuple[list[int], list[RawOp], list[ConvFold], bool]:
    lin: dict[str, Lin] = {name: start}
    removed: list[int] = []
    raw_ops: list[RawOp] = []
    convs: list[ConvFold] = []
    shape_reads: list[tuple[NodeCtx, Lin]] = []
    arithmetic = False
    for node_id, node in enumerate(index.nodes):
        hidden = _subgraph_reads(node) & lin.keys()
        touched = [i for i in node.input if i in lin]
        ctx = NodeCtx(index, node, node_id, lin, terminal_ids, border_mode, input_name, trials)
        if hidden:
            t = sorted(hidden)[0]
            raise Refusal(f"node {ctx.label} reads the normalised tensor '{t}' inside a subgraph", lin[t].via)
        if not touched:
            continue
        padded = next((t for t in touched if lin[t].padded), None)
        if padded is not None and node.op_type != "Conv":
            raise Refusal(f"node {ctx.label} reads the zero-padded tensor '{padded}'; only a Conv may follow a zero "
                          f"Pad of the normalised tensor", lin[padded].via)
        lane = next((t for t in touched if lin[t].lane), None)
        if lane is not None and node.op_type not in LANE_OPS:
            raise Refusal(f"node {ctx.label} reads '{lane}', one channel selected with a scalar index, as an "
                          f"{node.op_type}; only per-pixel arithmetic, Unsqueeze/Reshape back to a channel, "
                          f"Concat, Scatter and Where may follow such a selection", lin[lane].via)
        recognise = recogniser(node.op_type, index.opset) if node.domain in ("", "ai.onnx") else None
        if recognise is None:
            raise Refusal(f"node {ctx.label} reads the normalised tensor '{touched[0]}' and is not a per-pixel "
                          f"affine op, so the preprocessing cannot be removed", lin[touched[0]].via)
        step = recognise(ctx)
        lin.update(step.outputs)
        arithmetic |= step.arithmetic
        if step.terminal is not None:
            convs.append(step.terminal)
            if step.terminal.node_id != node_id:  # composed into the conv that reads it (an adapter)
                removed.append(node_id)
            continue
        removed.append(node_id)
        if step.raw_op is not None:
            raw_ops.append(step.raw_op)
        if step.shape_read is not None:
            shape_reads.append((ctx, lin[touched[0]]))
    if shape_reads:
        raw_ops = raw_ops + _resolve_shapes(index, shape_reads, removed, raw_ops)
    for t in lin:
        if t in index.output_names:
            raise Refusal(f"tensor '{t}' derived from the input is a graph output, so it cannot be removed",
                          lin[t].via)
    return removed, raw_ops, convs, arithmetic


def _live(index: GraphIndex, removed: set[int], overwritten: frozenset[tuple[int, int]] = frozenset()) -> set[int]:
    """Nodes that still feed a graph output once ``removed`` are gone (re-applied raw ops count as kept, but not
    their ``overwritten`` (node id, input position) operands, which the fold replaces by constants)."""
    needed, live = set(index.output_names), set()
    for i in range(len(index.nodes) - 1, -1, -1):
        node = index.nodes[i]
        if i not in removed and any(o in needed for o in node.output if o):
            live.add(i)
            needed.update(x for k, x in enumerate(node.input) if x and (i, k) not in overwritten)
            needed |= _subgraph_reads(node)
    return live


def _resolve_shapes(index: GraphIndex, shape_reads: list[tuple[NodeCtx, Lin]], removed: list[int],
                    raw_ops: list[RawOp]) -> list[RawOp]:
    """Each Shape of a derived tensor: re-applied to the raw tensor when a kept node reads it, else removed
    together with the shape arithmetic that only removed nodes used (scatter indices, Expand targets)."""
    pos = {id(n): i for i, n in enumerate(index.nodes)}
    raw_ids = {op.node_id for op in raw_ops}
    live = _live(index, set(removed) - raw_ids,
                 frozenset((op.node_id, k) for op in raw_ops for k, _ in op.patched_inputs))
    sinks = frozenset((op.node_id, m[0]) for op in raw_ops for m in op.masked_inputs)
    kept: list[RawOp] = []
    for ctx, lin in shape_reads:
        out = ctx.node.output[0]
        readers = [r for r in index.consumers.get(out, []) if pos[id(r)] in live]
        if readers:
            kept.append(kept_shape(ctx, lin, readers, live, sinks))
            continue
        frontier = [out]
        while frontier:  # the dead shape arithmetic downstream, removed with it
            for reader in index.consumers.get(frontier.pop(), []):
                i = pos[id(reader)]
                if i not in removed and i not in raw_ids:
                    removed.append(i)
                    frontier.extend(o for o in reader.output if o)
    return kept


__all__ = ["plan_fold", "plan_chain", "ChannelAffine"]
