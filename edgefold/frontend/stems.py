"""A camera format composed into the stem convs that read the converted frame: the graph side of
``frontend.compose`` (which plans the weights and the geometry). YUV: a conv on the centred Y plane plus a conv
on the centred chroma planes. Bayer: one conv on the mosaic away from the edges, exact strips along them, the
pieces joined after the local op that follows the stem. Each returns what replaces which node, or why not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.core.contract import PixelFormat, contracts_of, helper_nodes
from edgefold.frontend.compose import ChromaStem, MosaicStem, Window, neutral_colour, plan, plan_mosaic
from edgefold.frontend.planes import Graph, demosaic


@dataclass
class Composed:
    """A camera buffer composed into the stem convs: the nodes before them (``front``: planes, a cast), and each
    stem conv's replacement."""

    front: tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
    luma: str  # a float frame of the camera's size (Y, mosaic): what the size-only helpers read instead
    replaced: dict[str, list[onnx.NodeProto]]  # stem conv name -> the nodes computing its output instead
    convs: list[str]  # the new convs that carry the stem's weights (the rest of ``replaced`` are helpers)
    weights: dict[str, list[str]]  # stem conv name -> the initialisers it read
    macs: dict[str, list[int]]  # stem conv name -> MACs per output pixel and channel: composed, RGB stem
    joined: dict[str, str] = field(default_factory=dict)  # stem conv name -> the node after which pieces are joined
    copies: set[str] = field(default_factory=set)  # the model's own ops (after the stem) run on each piece
    raw: list[str] = field(default_factory=list)  # INT8 recentre: the integer tensors (pixel - 128) convs read
    aliases: list[str] = field(default_factory=list)  # other frame names whose size-only readers get ``luma``
    neutral: list[float] | None = None  # YUV: the RGB colour the planes are centred at instead of a border term
    raw_offset: float = 0.0


def compose_scale(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                  folded: onnx.ModelProto) -> Composed | str:
    """Mono10/12/16: the scale to the 8-bit range (x * 255 / (2^bits - 1)) in the stem convs' weights, which then
    read the camera's float32 frame: no Mul over the frame. The fold's border term depends on the frame's size
    only, so it is unchanged."""
    stems = _stem_convs(g, frame, set(helper_nodes(folded)))
    if isinstance(stems, str):
        return stems
    replaced: dict[str, list[onnx.NodeProto]] = {}
    inits: list[onnx.TensorProto] = []
    for stem in stems:
        conv = onnx.NodeProto()
        conv.CopyFrom(stem.node)
        name = f"{stem.node.name}/W_{fmt.genicam}"
        inits.append(numpy_helper.from_array((stem.weight.astype(np.float64) * fmt.scale).astype(np.float32), name))
        conv.input[0], conv.input[1] = src, name
        replaced[stem.node.name] = [conv]
    return Composed(([], inits), src, replaced, list(replaced), {s.node.name: [s.node.input[1]] for s in stems},
                    {s.node.name: [int(np.prod(s.weight.shape[1:])), 3 * int(np.prod(s.weight.shape[2:]))]
                     for s in stems})


def compose_yuv(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                 folded: onnx.ModelProto) -> Composed | str:
    """The stem convs reading the RGB ``frame`` split into a luma and a chroma conv (frontend/compose.py), or why
    not (then the front end converts the whole frame first)."""
    from edgefold.core.yuv import PACKED, matrix

    packed = fmt.chroma in PACKED
    h, w = (shape[2], shape[3] // 2) if packed else (shape[2] * 2 // 3, shape[3])
    y0, m = matrix(fmt.yuv)
    if fmt.chroma == "NV21":  # chroma channels come as V, U
        m = m[:, [0, 2, 1]]
    factors = (1, 2) if packed else (2, 2)
    helpers = set(helper_nodes(folded))
    # an INT8 build's frame + offset (RGB - 128): the planes are centred where the matrix gives that instead
    recentre = _recentre(g, frame, helpers)
    stems = _stem_convs(g, recentre[0].output[0] if recentre else frame, helpers)
    if isinstance(stems, str):
        return stems
    # where the planes are centred: the RGB value whose zero padding the stems expect - 0 (the fold's border term
    # then corrects for the normalisation), 128 after an INT8 build's recentring (frame - 128), or the colour that
    # normalises to zero, which makes the border term unnecessary (``neutral_colour``)
    target = np.zeros(3) if recentre is None else np.full(3, -recentre[1])
    adds = {stem.node.name: _border_add(g, stem.node, helpers) for stem in stems}
    neutral = None
    if recentre is None and all(a is not None for a in adds.values()):
        colours = []
        for stem in stems:
            add = adds[stem.node.name]
            assert add is not None
            term = _border_term(folded, next(i for i in add.input if i != stem.node.output[0]))
            colours.append(neutral_colour(stem.weight, stem.strides, stem.pads, (h, w), term))
        first = colours[0]
        if first is not None and all(x is not None and np.allclose(x, first, atol=1e-3) for x in colours):
            neutral = target = first
    centre = np.array([y0, 128.0, 128.0]) + np.linalg.solve(m, target)
    values = _constant_values(g)
    plans: dict[str, tuple[onnx.NodeProto, ChromaStem]] = {}
    for stem in stems:
        out = tuple((n + stem.pads[i] + stem.pads[i + 2] - stem.weight.shape[2 + i]) // stem.strides[i] + 1
                    for i, n in enumerate((h, w)))
        found = plan(stem.weight, stem.strides, stem.pads, (h, w), out, factors, m)
        if found is None:
            return (f"stem conv '{stem.node.name}' has stride {stem.strides[0]}x{stem.strides[1]}: odd strides see "
                    f"both chroma phases")
        plans[stem.node.name] = (stem.node, found)
    fr = Graph(fmt)
    c, nd = fr.const, fr.node
    x = nd("Cast", [src], "f32", to=onnx.TensorProto.FLOAT)
    batch = shape[0] if isinstance(shape[0], int) else -1
    if packed:  # (N, 1, H, 2W): Y at every other byte, U and V at every fourth
        y_at, c_at = (0, 1) if fmt.chroma == "YUYV" else (1, 0)
        axis3, end = c("axis3", np.array([3])), c("end", np.array([2 * w]))
        luma = nd("Slice", [x, c("y_s", np.array([y_at])), end, axis3, c("step2", np.array([2]))], "y")
        u = nd("Slice", [x, c("u_s", np.array([c_at])), end, axis3, c("step4", np.array([4]))], "u")
        v = nd("Slice", [x, c("v_s", np.array([c_at + 2])), end, axis3, c("step4", np.array([4]))], "v")
        chroma = nd("Concat", [u, v], "uv", axis=1)
    else:
        axis2 = c("axis2", np.array([2]))
        luma = nd("Slice", [x, c("y_start", np.array([0])), c("y_end", np.array([h])), axis2], "y")
        ch = nd("Slice", [x, c("c_start", np.array([h])), c("c_end", np.array([h * 3 // 2])), axis2], "chroma")
        if fmt.chroma == "I420":
            chroma = nd("Reshape", [ch, c("planar_shape", np.array([batch, 2, h // 2, w // 2], np.int64))], "uv")
        else:
            pairs = nd("Reshape", [ch, c("pairs_shape", np.array([batch, h // 2, w // 2, 2], np.int64))], "pairs")
            chroma = nd("Transpose", [pairs], "uv", perm=[0, 3, 1, 2])
    centred_y = nd("Sub", [luma, c("y0", np.array(centre[0], np.float32))], "y_centred") if centre[0] else luma
    centred_c = nd("Sub", [chroma, c("c0", centre[1:].reshape(1, 2, 1, 1).astype(np.float32))], "uv_centred")
    replaced: dict[str, list[onnx.NodeProto]] = {}
    if recentre is not None:
        replaced[recentre[0].name] = []
    for name, (node, p) in plans.items():
        st = Graph(fmt)
        st.prefix = name
        cc = centred_c
        keep = [p.rows.keep, p.cols.keep]
        if any(k is not None for k in keep):
            ends = [k if k is not None else np.iinfo(np.int64).max for k in keep]
            cc = st.node("Slice", [cc, st.const("chroma_start", np.zeros(2, np.int64)),
                                   st.const("chroma_end", np.array(ends, np.int64)),
                                   st.const("chroma_axes", np.array([2, 3], np.int64))], "chroma_crop")
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        bias = list(node.input[2:3])
        out = node.output[0]
        if neutral is not None:  # the conv reads (frame - x*): its bias gains sum(W) x*, the border term goes
            weight = next(s_.weight for s_ in stems if s_.node.name == name).astype(np.float64)
            old = values[bias[0]].astype(np.float64) if bias else 0.0
            bias = [st.const("luma_B", (old + np.einsum("ocuv,c->o", weight, neutral)).astype(np.float32))]
            add = adds[name]
            assert add is not None
            out = add.output[0]
            replaced[add.name] = []
        luma_in = [centred_y, st.const("luma_W", p.luma)] + bias
        yo = st.node("Conv", luma_in, "luma", kernel_shape=list(p.luma.shape[2:]),
                     strides=list(a.get("strides", [1, 1])), pads=list(a.get("pads", [0, 0, 0, 0])))
        co = st.node("Conv", [cc, st.const("chroma_W", p.chroma)], "chroma", kernel_shape=list(p.chroma.shape[2:]),
                     strides=[p.rows.stride, p.cols.stride],
                     pads=[p.rows.pad_before, p.cols.pad_before, p.rows.pad_after, p.cols.pad_after])
        st.output("Add", [yo, co], out, "luma_plus_chroma")
        new_nodes, new_inits = st.result()
        replaced[name] = new_nodes
        fr.inits.update({t.name: t for t in new_inits})
    front_nodes, front_inits = fr.result()
    # INT8 recentre: each stem's convs read the centred planes; Y - y0' is an integer plus a constant fraction
    # (limited range), quantised with step 1 as the front end's RGB - 128 would be
    raw = [centred_y] + [n.input[0] for new in replaced.values() for n in new if n.name.endswith("/chroma")]
    return Composed((front_nodes, front_inits), luma, replaced,
                     [f"{n}/{part}" for n in plans for part in ("luma", "chroma")],
                     {n: list(node.input[1:]) for n, (node, _) in plans.items()},
                     {n: [p.macs_per_output, p.luma[0].size * 3] for n, (_, p) in plans.items()},
                     raw=raw if recentre is not None else [], raw_offset=recentre[1] if recentre is not None else 0.0,
                     aliases=[recentre[0].output[0]] if recentre is not None else [],
                     neutral=[float(v) for v in neutral] if neutral is not None else None)


def compose_bayer(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                   folded: onnx.ModelProto) -> Composed | str:
    """Each even-stride stem conv reading the demosaiced ``frame`` as one conv on the mosaic away from the edges,
    and exact strips (demosaic, then the stem) along them, put together with two Concats after the local op that
    follows the stem (a pool or conv, through pointwise ops: there the tensor is smaller) or after the stem
    itself (frontend/compose.py); or why not."""
    from edgefold.core.bayer import neighbour_weights

    assert fmt.mosaic is not None
    h, w = shape[2], shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        return "the frame size is dynamic (the edge strips are cut at fixed rows; fold with --input-size HxW)"
    helpers = set(helper_nodes(folded))
    recentre = _recentre(g, frame, helpers)  # an INT8 build's frame - 128: the mosaic - 128 (demosaic keeps constants)
    if recentre is not None and fmt.bits != 8:
        return "a recentred (INT8) frame of more than 8 bits is not an integer mosaic"
    stems = _stem_convs(g, recentre[0].output[0] if recentre else frame, helpers)
    if isinstance(stems, str):
        return stems
    fr = Graph(fmt)
    mosaic = fr.node("Cast", [src], "f32", to=onnx.TensorProto.FLOAT)
    composed: dict[str, list[onnx.NodeProto]] = {}
    if recentre is not None:  # under the fold's own name: a size-only helper may still read it
        mosaic = fr.output("Add", [mosaic, fr.const("raw_offset", np.array(recentre[1], np.float32))],
                           recentre[0].output[0], "raw_centred")
        composed[recentre[0].name] = []
    convs: list[str] = []
    macs: dict[str, list[int]] = {}
    joined: dict[str, str] = {}
    copies: set[str] = set()
    values = _constant_values(g)
    made_by_constant = {n.output[0] for n in g.node if n.op_type == "Constant"}
    for stem in stems:
        node, name = stem.node, stem.node.name
        add = _border_add(g, node, helpers)
        start = add.output[0] if add is not None else node.output[0]
        chain, tail = _tail(g, start)
        windows = _windows(tail) if tail is not None else None
        p = None
        if windows is not None:
            p = plan_mosaic(stem.weight, stem.strides, stem.pads, (h, w), neighbour_weights(fmt.mosaic), fmt.scale,
                            windows)
        if p is None:  # assemble right after the stem
            chain, tail = [], None
            p = plan_mosaic(stem.weight, stem.strides, stem.pads, (h, w), neighbour_weights(fmt.mosaic), fmt.scale)
        if p is None:
            return (f"stem conv '{name}' has stride {stem.strides[0]}x{stem.strides[1]} (each output must see one "
                    f"colour phase: even strides) or the frame is too small for it")
        # the fold's border term (zero away from the edges) is added on the strips only: a constant there
        ring = None
        if add is not None:
            ring = _border_term(folded, next(i for i in add.input if i != node.output[0]))
            (ra, rb), (ca, cb) = p.rows.interior_stem, p.cols.interior_stem
            inside = np.abs(ring[:, :, ra:rb, ca:cb])
            if inside.size and inside.max() > 1e-6 * (1.0 + np.abs(ring).max()):  # zero up to its float rounding
                return f"the border term of '{name}' is not zero away from the edges"
        out = tail.output[0] if tail is not None else start
        used = {i for n in chain + ([tail] if tail is not None else []) for i in n.input if i in made_by_constant}
        nodes, inits, copied = _bayer_stem(node, stem.weight, p, mosaic, fmt, shape, ring, chain, tail, start, out,
                                           {x: values[x] for x in used})
        copies |= copied
        composed[name] = nodes
        for gone in ([add] if add is not None else []) + chain + ([tail] if tail is not None else []):
            composed[gone.name] = []
        convs += [m.name for m in nodes if m.op_type == "Conv" and m.input[1] in (f"{name}/stem_W", f"{name}/mosaic_W")]
        fr.inits.update({t.name: t for t in inits})
        macs[name] = [p.macs_per_output, 3 * (p.kernel.shape[2] - 2) * (p.kernel.shape[3] - 2)]
        joined[name] = f"{tail.op_type} '{tail.name}'" if tail is not None else "the stem"
    return Composed(fr.result(), mosaic, composed, convs, {s.node.name: list(s.node.input[1:]) for s in stems}, macs,
                     joined, copies, raw=[f"{s.node.name}/interior_px" for s in stems] if recentre is not None else [],
                     raw_offset=recentre[1] if recentre is not None else 0.0)


def _recentre(g: onnx.GraphProto, frame: str, helpers: set[str]) -> tuple[onnx.NodeProto, float] | None:
    """The fold's ``frame + offset`` for INT8 recentring (a helper Add of a scalar), if the frame's only reader."""
    readers = [n for n in g.node if frame in n.input]
    inits = {t.name: t for t in g.initializer}
    if len(readers) != 1 or readers[0].op_type != "Add" or readers[0].name not in helpers:
        return None
    other = [i for i in readers[0].input if i != frame]
    if len(other) != 1 or other[0] not in inits or numpy_helper.to_array(inits[other[0]]).size != 1:
        return None
    return readers[0], float(numpy_helper.to_array(inits[other[0]]).reshape(()))


# ops that act on each pixel alone (their other inputs constants with no spatial extent): the strips and the
# interior can each run them, so the pieces may be joined after the local op that follows
_POINTWISE = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu", "Tanh", "Softplus",
              "PRelu", "BatchNormalization", "Mul", "Add", "Sub", "Div", "Identity"}


def _tail(g: onnx.GraphProto, start: str) -> tuple[list[onnx.NodeProto], onnx.NodeProto | None]:
    """The pointwise nodes after the stem's output ``start`` and the one pool or conv they lead to (SiLU, x *
    sigmoid(x), included), or ([], None)."""
    values = _constant_values(g)
    outputs = {o.name for o in g.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in set(n.input):
            readers.setdefault(i, []).append(n)

    def constant(name: str, op: str) -> bool:
        """A constant with no spatial extent: a scalar, per channel (C, 1, 1), or BatchNormalization's vectors."""
        if name not in values:
            return False
        dims = list(values[name].shape)
        return op == "BatchNormalization" or all(d == 1 for d in dims) or (len(dims) >= 3 and dims[-2:] == [1, 1])

    chain: list[onnx.NodeProto] = []
    cur = start
    while cur not in outputs:
        nxt = readers.get(cur, [])
        if len(nxt) == 1 and nxt[0].op_type in ("MaxPool", "AveragePool", "Conv") and nxt[0].input[0] == cur \
                and len(nxt[0].output) == 1 and cur not in nxt[0].input[1:]:
            return chain, nxt[0]
        if len(nxt) == 1 and nxt[0].op_type in _POINTWISE and len(nxt[0].output) == 1 \
                and all(i == cur or constant(i, nxt[0].op_type) for i in nxt[0].input if i):
            chain.append(nxt[0])
            cur = nxt[0].output[0]
            continue
        ops = sorted(n.op_type for n in nxt)
        if ops in (["Mul", "Sigmoid"], ["HardSigmoid", "Mul"]):  # x * sigmoid(x): SiLU / hard swish
            gate = next(n for n in nxt if n.op_type != "Mul")
            mul = next(n for n in nxt if n.op_type == "Mul")
            if gate.input[0] == cur and sorted(mul.input) == sorted([cur, gate.output[0]]) \
                    and [n.name for n in readers.get(gate.output[0], [])] == [mul.name]:
                chain += [gate, mul]
                cur = mul.output[0]
                continue
        break
    return [], None


def _constant_values(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every constant tensor by name: initialisers and the outputs of Constant nodes (paddle2onnx stores its
    weights so)."""
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _windows(node: onnx.NodeProto) -> tuple[Window, Window] | None:
    """A pool's or conv's sliding window along rows and columns, or None (ceil_mode, auto_pad, not 2-D)."""
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    if a.get("ceil_mode", 0) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    kernel = a.get("kernel_shape")
    if kernel is None or len(kernel) != 2:
        return None
    strides, pads, dil = a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]), a.get("dilations", [1, 1])
    return tuple(Window((kernel[i] - 1) * dil[i] + 1, strides[i], pads[i], pads[i + 2]) for i in range(2))  # type: ignore[return-value]


def _bayer_stem(node: onnx.NodeProto, weight: np.ndarray, p: MosaicStem, mosaic: str, fmt: PixelFormat,
                shape: list, ring: np.ndarray | None, chain: list[onnx.NodeProto], tail: onnx.NodeProto | None,
                start: str, out: str, constants: dict[str, np.ndarray] | None = None
                ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], set[str]]:
    """The nodes replacing one stem conv, its border Add, the pointwise ``chain`` and the ``tail`` op: each piece
    (the composed conv on the mosaic's interior; the exact strips along the edges, plus the border term ``ring``
    there) runs the stem, the chain and the tail, and two Concats (the middle band's columns, then the bands)
    give ``out``; also the names of the copies of the model's own ops."""
    st = Graph(fmt)
    st.prefix = node.name
    copied: set[str] = set()
    c = st.const
    h, w = shape[2], shape[3]
    bias = list(node.input[2:3])
    strides, pads = _conv_geometry(node)
    pt, pl, pb, pr = pads
    tail_pads = _conv_geometry(tail)[1] if tail is not None else [0, 0, 0, 0]
    node_constants = constants or {}
    r, q = p.rows, p.cols

    def crop(x: str, starts: list[int], ends: list[int], axes: list[int], label: str) -> str:
        return st.node("Slice", [x, c(f"{label}_s", np.array(starts, np.int64)), c(f"{label}_e", np.array(ends, np.int64)),
                                 c(f"{label}_a", np.array(axes, np.int64))], label)

    def finish(y: str, label: str, keep: list[int]) -> str:
        """The chain and the tail on one piece; ``keep`` says which of the tail's pads (top, left, bottom, right)
        this piece has (the others are edges of the piece, not of the frame)."""
        names = {start: y}
        for n in chain + ([tail] if tail is not None else []):
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            copy.name = f"{node.name}/{label}/{n.name}"
            copied.add(copy.name)
            for i, x in enumerate(copy.input):  # a Constant node's output may come later in the graph: a copy here
                copy.input[i] = names.get(x) or (c(f"const/{x}", node_constants[x]) if x in node_constants else x)
            for i, x in enumerate(copy.output):
                names[x] = copy.output[i] = f"{node.name}/{label}/{x}"
            if n is tail:
                for attr in copy.attribute:
                    if attr.name == "pads":
                        attr.ints[:] = [v if k else 0 for v, k in zip(tail_pads, keep)]
            st.nodes.append(copy)
        return names[out] if (chain or tail is not None) else y

    def strip(axis: int, start_px: int, stop_px: int, keep_rgb: tuple[int, int], edges: list[int], label: str,
              stem_part: tuple[slice, slice]) -> str:
        """The exact result along one edge: demosaic a strip of the mosaic, keep the pixels whose demosaic is the
        whole frame's, the stem with that edge's pads only (``edges``: top, left, bottom, right), the border term,
        then the chain and the tail."""
        part = crop(mosaic, [start_px], [stop_px], [axis], f"{label}_mosaic")
        strip_shape = list(shape)
        strip_shape[axis] = stop_px - start_px
        rgb = f"{node.name}/{label}_rgb"
        d_nodes, d_inits = demosaic(part, rgb, fmt, strip_shape, prefix=f"{node.name}/{label}")
        st.nodes.extend(d_nodes)
        st.inits.update({t.name: t for t in d_inits})
        kept = crop(rgb, [keep_rgb[0]], [keep_rgb[1]], [axis], f"{label}_keep")
        y = st.node("Conv", [kept, c("stem_W", weight), *bias], label, kernel_shape=list(weight.shape[2:]),
                    strides=strides, pads=[v if k else 0 for v, k in zip(pads, edges)])
        if ring is not None:
            y = st.node("Add", [y, c(f"{label}_border", ring[:, :, stem_part[0], stem_part[1]])], f"{label}_bordered")
        return finish(y, label, edges)

    (ra, rb), (ca, cb) = r.interior_px, q.interior_px
    interior = st.node("Conv", [crop(mosaic, [ra, ca], [rb, cb], [2, 3], "interior_px"), c("mosaic_W", p.kernel), *bias],
                       "interior", kernel_shape=list(p.kernel.shape[2:]), strides=strides, pads=[0, 0, 0, 0])
    middle = [finish(interior, "interior", [0, 0, 0, 0])]
    mid = ([r.before], [r.length - r.after], [2])
    every_row, every_col = slice(0, r.stem_len), slice(0, q.stem_len)
    left = strip(3, 0, q.lead_px, (0, q.lead_keep), [1, 1, 1, 0], "left", (every_row, slice(0, q.lead_stem)))
    middle.insert(0, crop(left, *mid, "left_mid"))
    if q.after:
        right = strip(3, q.trail_px, w, (q.trail_keep, w - q.trail_px), [1, 0, 1, 1], "right",
                      (every_row, slice(q.trail_stem, q.stem_len)))
        middle.append(crop(right, *mid, "right_mid"))
    bands = [strip(2, 0, r.lead_px, (0, r.lead_keep), [1, 1, 0, 1], "top", (slice(0, r.lead_stem), every_col)),
             st.node("Concat", middle, "middle", axis=3)]
    if r.after:
        bands.append(strip(2, r.trail_px, h, (r.trail_keep, h - r.trail_px), [0, 1, 1, 1], "bottom",
                           (slice(r.trail_stem, r.stem_len), every_col)))
    st.output("Concat", bands, out, "assembled", axis=2)
    return (*st.result(), copied)


def _border_add(g: onnx.GraphProto, conv: onnx.NodeProto, helpers: set[str]) -> onnx.NodeProto | None:
    """The fold's Add of its border term after a stem conv, if the conv has one (and nothing else reads it)."""
    readers = [n for n in g.node if conv.output[0] in n.input]
    if len(readers) == 1 and readers[0].op_type == "Add" and readers[0].name in helpers:
        return readers[0]
    return None


def _border_term(folded: onnx.ModelProto, tensor: str) -> np.ndarray:
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


def _conv_geometry(node: onnx.NodeProto) -> tuple[list[int], list[int]]:
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    return list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0]))


@dataclass(frozen=True)
class _Stem:
    node: onnx.NodeProto
    weight: np.ndarray
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]


def _stem_convs(g: onnx.GraphProto, frame: str, helpers: set[str]) -> list[_Stem] | str:
    """The convs that read the converted ``frame`` (as their data input, plain: no group, dilation or auto_pad,
    a constant weight), or why the frame has another reader (the size-only border helpers are fine)."""
    inits = {t.name: t for t in g.initializer}
    stems = []
    for node in g.node:
        if frame not in node.input:
            continue
        if node.name in helpers and _reads_channel0(node, inits):
            continue
        if node.op_type != "Conv" or list(node.input).index(frame) != 0 or frame in node.input[1:]:
            return f"'{node.name}' ({node.op_type}) reads the converted frame, not only a stem conv"
        a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
        weight = inits.get(node.input[1])
        if (weight is None or a.get("group", 1) != 1 or any(d != 1 for d in a.get("dilations", [1, 1]))
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or len(weight.dims) != 4):
            return f"stem conv '{node.name}' is grouped, dilated, auto-padded or has a computed weight"
        stems.append(_Stem(node, numpy_helper.to_array(weight), tuple(a.get("strides", [1, 1])),
                           tuple(a.get("pads", [0, 0, 0, 0]))))
    return stems or "no conv reads the converted frame"


def _reads_channel0(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """A Slice that keeps channel 0 only (the border term's ones grid: it uses the frame's size, not its values)."""
    if node.op_type != "Slice" or len(node.input) < 4 or not all(i in inits for i in node.input[1:4]):
        return False
    starts, ends, axes = (numpy_helper.to_array(inits[i]).tolist() for i in node.input[1:4])
    return 1 in axes and starts[axes.index(1)] == 0 and ends[axes.index(1)] == 1

