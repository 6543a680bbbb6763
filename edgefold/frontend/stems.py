"""A camera format composed into the stem convs that read the converted frame: the graph side of
``frontend.compose`` (which plans the weights and the geometry). Mono10-16: the scale in the stem's weights.
YUV: a conv on the centred Y plane plus a conv on the centred chroma planes. Bayer (``frontend.bayer_stem``): one
conv on the mosaic away from the edges, exact strips along them. Each returns what replaces which node, or why
not; ``frontend.pixels.attach`` makes the change. Nodes are known by their output (``graph.names.node_key``):
node names may be empty or repeat. Every name added is fresh (``graph.names.FreshNames``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.core.contract import PixelFormat, contracts_of, helper_outputs
from edgefold.frontend.compose import ChromaStem, Window, neutral_colour, plan
from edgefold.frontend.planes import Graph, yuv_planes
from edgefold.graph.names import FreshNames, node_key, node_label


@dataclass
class Composed:
    """A camera buffer composed into the stem convs: the nodes before them (``front``: planes, a cast), and each
    stem conv's replacement."""

    front: tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
    luma: str  # a float frame of the camera's size (Y, mosaic): what the size-only helpers read instead
    # nodes by their node_key (first output): stem conv (and the nodes composed with it) -> the nodes instead
    replaced: dict[str, list[onnx.NodeProto]]
    convs: list[str]  # the new convs that carry the stem's weights (the rest of ``replaced`` are helpers)
    weights: dict[str, list[str]]  # stem conv -> the initialisers it read
    # by the stem's output tensor (after the fold's border term: the original conv's output), for the report
    macs: dict[str, list[int]]  # MACs per output pixel and channel: composed, RGB stem
    joined: dict[str, str] = field(default_factory=dict)  # the node after which pieces are joined
    copies: set[str] = field(default_factory=set)  # the model's own ops (after the stem) run on each piece
    raw: list[str] = field(default_factory=list)  # INT8 recentre: the integer tensors (pixel - 128) convs read
    aliases: list[str] = field(default_factory=list)  # other frame names whose size-only readers get ``luma``
    neutral: list[float] | None = None  # YUV: the RGB colour the planes are centred at instead of a border term
    raw_offset: float = 0.0


def compose_scale(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                  folded: onnx.ModelProto, fresh: FreshNames) -> Composed | str:
    """Mono10/12/16: the scale to the 8-bit range (x * 255 / (2^bits - 1)) in the stem convs' weights, which then
    read the camera's float32 frame: no Mul over the frame. The fold's border term depends on the frame's size
    only, so it is unchanged."""
    helpers = set(helper_outputs(folded))
    stems = stem_convs(g, frame, helpers)
    if isinstance(stems, str):
        return stems
    replaced: dict[str, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    for stem in stems:
        conv = onnx.NodeProto()
        conv.CopyFrom(stem.node)
        name = fresh.name(f"{stem.node.name or node_key(stem.node)}/W_{fmt.genicam}")
        inits.append(numpy_helper.from_array((stem.weight.astype(np.float64) * fmt.scale).astype(np.float32), name))
        conv.input[0], conv.input[1] = src, name
        replaced[node_key(stem.node)] = [conv]
    return Composed(([], inits), src, replaced, list(replaced), {node_key(s.node): [s.node.input[1]] for s in stems},
                    {stem_output(g, s.node, helpers): [int(np.prod(s.weight.shape[1:])),
                                                        3 * int(np.prod(s.weight.shape[2:]))] for s in stems})


def compose_yuv(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                 folded: onnx.ModelProto, fresh: FreshNames) -> Composed | str:
    """The stem convs reading the RGB ``frame`` split into a luma and a chroma conv (frontend/compose.py), or why
    not (then the front end converts the whole frame first)."""
    from edgefold.core.yuv import matrix

    h, w = fmt.image_size(shape[2], shape[3])
    y0, m = matrix(fmt.yuv)
    if fmt.chroma == "NV21":  # chroma channels come as V, U
        m = m[:, [0, 2, 1]]
    factors = (1, 2) if fmt.packed else (2, 2)
    helpers = set(helper_outputs(folded))
    # an INT8 build's frame + offset (RGB - 128): the planes are centred where the matrix gives that instead
    recentre = recentre_of(g, frame, helpers)
    stems = stem_convs(g, recentre[0].output[0] if recentre else frame, helpers)
    if isinstance(stems, str):
        return stems
    # where the planes are centred: the RGB value whose zero padding the stems expect - 0 (the fold's border term
    # then corrects for the normalisation), 128 after an INT8 build's recentring (frame - 128), or the colour that
    # normalises to zero, which makes the border term unnecessary (``neutral_colour``)
    target = np.zeros(3) if recentre is None else np.full(3, -recentre[1])
    adds = {node_key(stem.node): border_add(g, stem.node, helpers) for stem in stems}
    neutral = None
    if recentre is None and all(a is not None for a in adds.values()):
        colours = []
        for stem in stems:
            add = adds[node_key(stem.node)]
            assert add is not None
            term = border_term(folded, next(i for i in add.input if i != stem.node.output[0]))
            colours.append(neutral_colour(stem.weight, stem.strides, stem.pads, (h, w), term))
        first = colours[0]
        if first is not None and all(x is not None and np.allclose(x, first, atol=1e-3) for x in colours):
            neutral = target = first
    centre = np.array([y0, 128.0, 128.0]) + np.linalg.solve(m, target)
    values = constant_values(g)
    plans: dict[str, tuple[Stem, ChromaStem]] = {}
    for stem in stems:
        rows, cols = (Window(stem.weight.shape[2 + i], stem.strides[i], stem.pads[i], stem.pads[i + 2])
                      for i in range(2))
        out = (rows.out_len(h), cols.out_len(w))
        found = plan(stem.weight, stem.strides, stem.pads, (h, w), out, factors, m)
        if found is None:
            return (f"stem conv {node_label(stem.node)} has stride {stem.strides[0]}x{stem.strides[1]}: odd strides "
                    f"see both chroma phases")
        plans[node_key(stem.node)] = (stem, found)
    fr = Graph(fmt, fresh.prefix(f"edgefold/{fmt.genicam}"))
    c, nd = fr.const, fr.node
    luma, chroma = yuv_planes(fr, src, fmt, shape)
    centred_y = nd("Sub", [luma, c("y0", np.array(centre[0], np.float32))], "y_centred") if centre[0] else luma
    centred_c = nd("Sub", [chroma, c("c0", centre[1:].reshape(1, 2, 1, 1).astype(np.float32))], "uv_centred")
    replaced: dict[str, list[onnx.NodeProto]] = {}
    if recentre is not None:
        replaced[node_key(recentre[0])] = []
    convs: list[str] = []
    chroma_in: list[str] = []
    for name, (stem, p) in plans.items():
        node = stem.node
        st = Graph(fmt, fresh.prefix(f"{node.name or name}/{fmt.genicam}"))
        cc = centred_c
        keep = [p.rows.keep, p.cols.keep]
        if any(k is not None for k in keep):
            ends = [k if k is not None else np.iinfo(np.int64).max for k in keep]
            cc = st.node("Slice", [cc, st.const("chroma_start", np.zeros(2, np.int64)),
                                   st.const("chroma_end", np.array(ends, np.int64)),
                                   st.const("chroma_axes", np.array([2, 3], np.int64))], "chroma_crop")
        bias = list(node.input[2:3])
        out = node.output[0]
        if neutral is not None:  # the conv reads (frame - x*): its bias gains sum(W) x*, the border term goes
            old = values[bias[0]].astype(np.float64) if bias else 0.0
            shift = np.einsum("ocuv,c->o", stem.weight.astype(np.float64), neutral)
            bias = [st.const("luma_B", (old + shift).astype(np.float32))]
            add = adds[name]
            assert add is not None
            out = add.output[0]
            replaced[node_key(add)] = []
        luma_in = [centred_y, st.const("luma_W", p.luma)] + bias
        yo = st.node("Conv", luma_in, "luma", kernel_shape=list(p.luma.shape[2:]), strides=list(stem.strides),
                     pads=list(stem.pads))
        co = st.node("Conv", [cc, st.const("chroma_W", p.chroma)], "chroma", kernel_shape=list(p.chroma.shape[2:]),
                     strides=[p.rows.stride, p.cols.stride],
                     pads=[p.rows.pad_before, p.cols.pad_before, p.rows.pad_after, p.cols.pad_after])
        st.output("Add", [yo, co], out, "luma_plus_chroma")
        convs += [yo, co]
        chroma_in.append(cc)
        new_nodes, new_inits = st.result()
        replaced[name] = new_nodes
        fr.inits.update({t.name: t for t in new_inits})
    front_nodes, front_inits = fr.result()
    # INT8 recentre: each stem's convs read the centred planes; Y - y0' is an integer plus a constant fraction
    # (limited range), quantised with step 1 as the front end's RGB - 128 would be
    raw = [centred_y] + chroma_in
    return Composed((front_nodes, front_inits), luma, replaced, convs,
                     {n: list(stem.node.input[1:]) for n, (stem, _) in plans.items()},
                     {stem_output(g, stem.node, helpers): [p.macs_per_output, p.luma[0].size * 3]
                      for stem, p in plans.values()},
                     raw=raw if recentre is not None else [], raw_offset=recentre[1] if recentre is not None else 0.0,
                     aliases=[recentre[0].output[0]] if recentre is not None else [],
                     neutral=[float(v) for v in neutral] if neutral is not None else None)


def recentre_of(g: onnx.GraphProto, frame: str, helpers: set[str]) -> tuple[onnx.NodeProto, float] | None:
    """The fold's ``frame + offset`` for INT8 recentring (a helper Add of a scalar), if the frame's only reader.
    ``helpers``: the helper nodes' outputs (``helper_outputs``)."""
    readers = [n for n in g.node if frame in n.input]
    inits = {t.name: t for t in g.initializer}
    if len(readers) != 1 or readers[0].op_type != "Add" or node_key(readers[0]) not in helpers:
        return None
    other = [i for i in readers[0].input if i != frame]
    if len(other) != 1 or other[0] not in inits or numpy_helper.to_array(inits[other[0]]).size != 1:
        return None
    return readers[0], float(numpy_helper.to_array(inits[other[0]]).reshape(()))


def constant_values(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every constant tensor by name: initialisers and the outputs of Constant nodes (paddle2onnx stores its
    weights so)."""
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def border_add(g: onnx.GraphProto, conv: onnx.NodeProto, helpers: set[str]) -> onnx.NodeProto | None:
    """The fold's Add of its border term after a stem conv, if the conv has one (and nothing else reads it)."""
    readers = [n for n in g.node if conv.output[0] in n.input]
    if len(readers) == 1 and readers[0].op_type == "Add" and node_key(readers[0]) in helpers:
        return readers[0]
    return None


def stem_output(g: onnx.GraphProto, conv: onnx.NodeProto, helpers: set[str]) -> str:
    """What a stem conv computes in the original model: the output of the fold's border Add after it, if any."""
    add = border_add(g, conv, helpers)
    return (add if add is not None else conv).output[0]


def border_term(folded: onnx.ModelProto, tensor: str) -> np.ndarray:
    """The value of a fold's border term at the model's static size: it depends on the frame's size only (the
    fold makes it from ``frame * 0 + 1``), so any frame gives it; a batch of one."""
    from edgefold.backends.ort import session

    probe = onnx.ModelProto()
    probe.CopyFrom(folded)
    del probe.graph.output[:]
    probe.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    c = contracts_of(folded)[0]
    shape = [d if isinstance(d, int) else 1 for d in c.shape]
    return session(probe).run([tensor], {c.name: np.zeros(shape, np.float32)})[0]


@dataclass(frozen=True)
class Stem:
    node: onnx.NodeProto
    weight: np.ndarray
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]


def stem_convs(g: onnx.GraphProto, frame: str, helpers: set[str]) -> list[Stem] | str:
    """The convs that read the converted ``frame`` (as their data input, plain: no group, dilation or auto_pad,
    a constant weight), or why the frame has another reader (the size-only border helpers are fine)."""
    inits = {t.name: t for t in g.initializer}
    stems = []
    for node in g.node:
        if frame not in node.input:
            continue
        if node_key(node) in helpers and reads_channel0(node, inits):
            continue
        if node.op_type != "Conv" or list(node.input).index(frame) != 0 or frame in node.input[1:]:
            return f"{node_label(node)} reads the converted frame, not only a stem conv"
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        weight = inits.get(node.input[1])
        if (weight is None or a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1]))
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or len(weight.dims) != 4):
            return f"stem conv {node_label(node)} is grouped, dilated, auto-padded or has a computed weight"
        stems.append(Stem(node, numpy_helper.to_array(weight), tuple(a.get("strides", [1, 1])),
                           tuple(a.get("pads", [0, 0, 0, 0]))))
    return stems or "no conv reads the converted frame"


def reads_channel0(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """A Slice that keeps channel 0 only (the border term's ones grid: it uses the frame's size, not its values)."""
    if node.op_type != "Slice" or len(node.input) < 4 or not all(i in inits for i in node.input[1:4]):
        return False
    starts, ends, axes = (numpy_helper.to_array(inits[i]).tolist() for i in node.input[1:4])
    return 1 in axes and starts[axes.index(1)] == 0 and ends[axes.index(1)] == 1

