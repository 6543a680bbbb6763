"""A Bayer mosaic composed into the even-stride stem convs that read the demosaiced frame (planned in
``frontend.compose``): one conv on the mosaic away from the edges, where OpenCV's demosaic is the plain bilinear
one; exact strips along the edges (the demosaic, then the stem); the pieces joined with two Concats after the
local op that follows the stem when only pointwise ops lie between (the tensor is smaller there), else right after
the stem. The strips are centred at the colour that normalises to zero, so their zero padding is the original's
and the fold's border term goes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from edgefold.core.contract import PixelFormat, helper_outputs
from edgefold.frontend.compose import MosaicStem, Window, neutral_colour, plan_mosaic
from edgefold.frontend.planes import Graph, demosaic
from edgefold.frontend.stems import (
    Composed,
    Stem,
    border_add,
    border_term,
    constant_values,
    recentre_of,
    stem_convs,
)
from edgefold.graph.names import FreshNames, node_key, node_label


def compose_bayer(g: onnx.GraphProto, frame: str, src: str, fmt: PixelFormat, shape: list,
                   folded: onnx.ModelProto, fresh: FreshNames) -> Composed | str:
    """Each even-stride stem conv reading the demosaiced ``frame`` as one conv on the mosaic away from the edges,
    and exact strips (demosaic, then the stem) along them, put together with two Concats after the local op that
    follows the stem (a pool or conv, through pointwise ops: there the tensor is smaller) or after the stem
    itself (frontend/compose.py); or why not."""
    from edgefold.core.bayer import neighbour_weights

    assert fmt.mosaic is not None
    h, w = shape[2], shape[3]
    if not (isinstance(h, int) and isinstance(w, int)):
        return ("the frame size is dynamic (the edge strips are cut at fixed rows; fold with --input-size HxW, or "
                "build with a static --shapes profile)")
    helpers = set(helper_outputs(folded))
    recentre = recentre_of(g, frame, helpers)  # an INT8 build's frame - 128: the mosaic - 128 (demosaic keeps constants)
    if recentre is not None and fmt.bits != 8:
        return "a recentred (INT8) frame of more than 8 bits is not an integer mosaic"
    stems = stem_convs(g, recentre[0].output[0] if recentre else frame, helpers)
    if isinstance(stems, str):
        return stems
    fr = Graph(fmt, fresh.prefix(f"edgefold/{fmt.genicam}"))
    mosaic = fr.node("Cast", [src], "f32", to=onnx.TensorProto.FLOAT)
    composed: dict[str, list[onnx.NodeProto]] = {}
    if recentre is not None:  # under the fold's own name: a size-only helper may still read it
        mosaic = fr.output("Add", [mosaic, fr.const("raw_offset", np.array(recentre[1], np.float32))],
                           recentre[0].output[0], "raw_centred")
        composed[node_key(recentre[0])] = []
    convs: list[str] = []
    macs: dict[str, list[int]] = {}
    joined: dict[str, str] = {}
    copies: set[str] = set()
    raw: list[str] = []
    values = constant_values(g)
    made_by_constant = {n.output[0] for n in g.node if n.op_type == "Constant"}
    for stem in stems:
        node, name = stem.node, node_key(stem.node)
        add = border_add(g, node, helpers)
        start = add.output[0] if add is not None else node.output[0]
        chain, tail = _tail(g, start)
        windows = _windows(tail) if tail is not None else None
        p = None
        if windows is not None:
            p = plan_mosaic(stem.weight, stem.strides, stem.pads, (h, w), neighbour_weights(fmt.mosaic), fmt.scale,
                            windows)
        if p is None:  # assemble right after the stem
            chain, tail, windows = [], None, None
            p = plan_mosaic(stem.weight, stem.strides, stem.pads, (h, w), neighbour_weights(fmt.mosaic), fmt.scale)
        if p is None:
            return (f"stem conv {node_label(node)} has stride {stem.strides[0]}x{stem.strides[1]} (each output must "
                    f"see one colour phase: even strides) or the frame is too small for it")
        # the fold's border term stands for zero padding of the normalised frame: the strips are centred at the
        # colour that normalises to zero and zero-padded (the interior reads no padding)
        centring = None
        if add is not None:
            term = border_term(folded, next(i for i in add.input if i != node.output[0]))
            neutral = neutral_colour(stem.weight, stem.strides, stem.pads, (h, w), term)
            if neutral is None:
                return f"the border term of {node_label(node)} is not the zero padding of one colour"
            old = values[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else 0.0
            centring = (neutral, old + np.einsum("ocuv,c->o", stem.weight.astype(np.float64), neutral))
        out = tail.output[0] if tail is not None else start
        used = {i for n in chain + ([tail] if tail is not None else []) for i in n.input if i in made_by_constant}
        tail_pads = [0, 0, 0, 0] if windows is None else \
            [windows[0].before, windows[1].before, windows[0].after, windows[1].after]
        prefix = fresh.prefix(f"{node.name or name}/{fmt.genicam}")
        nodes, inits, copied = _bayer_stem(stem, p, mosaic, fmt, shape, centring, chain, tail, tail_pads, start, out,
                                           prefix, {x: values[x] for x in used})
        copies |= copied
        composed[name] = nodes
        for gone in ([add] if add is not None else []) + chain + ([tail] if tail is not None else []):
            composed[node_key(gone)] = []
        convs += [node_key(m) for m in nodes
                  if m.op_type == "Conv" and m.input[1] in (f"{prefix}/stem_W", f"{prefix}/mosaic_W")]
        raw.append(f"{prefix}/interior_px")
        fr.inits.update({t.name: t for t in inits})
        macs[start] = [p.macs_per_output, 3 * (p.kernel.shape[2] - 2) * (p.kernel.shape[3] - 2)]
        joined[start] = f"{tail.op_type} '{tail.name or node_key(tail)}'" if tail is not None else "the stem"
    return Composed(fr.result(), mosaic, composed, convs, {node_key(s.node): list(s.node.input[1:]) for s in stems},
                     macs, joined, copies, raw=raw if recentre is not None else [],
                     raw_offset=recentre[1] if recentre is not None else 0.0)


# ops that act on each pixel alone (their other inputs constants with no spatial extent): the strips and the
# interior can each run them, so the pieces may be joined after the local op that follows
_POINTWISE = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu", "Tanh", "Softplus",
              "PRelu", "BatchNormalization", "Mul", "Add", "Sub", "Div", "Identity"}


def _tail(g: onnx.GraphProto, start: str) -> tuple[list[onnx.NodeProto], onnx.NodeProto | None]:
    """The pointwise nodes after the stem's output ``start`` and the one pool or conv they lead to (SiLU, x *
    sigmoid(x), included), or ([], None)."""
    values = constant_values(g)
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
                    and [node_key(n) for n in readers.get(gate.output[0], [])] == [node_key(mul)] \
                    and gate.output[0] not in outputs:
                chain += [gate, mul]
                cur = mul.output[0]
                continue
        break
    return [], None


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


def _bayer_stem(stem: Stem, p: MosaicStem, mosaic: str, fmt: PixelFormat, shape: list,
                centring: tuple[np.ndarray, np.ndarray] | None,
                chain: list[onnx.NodeProto], tail: onnx.NodeProto | None, tail_pads: list[int], start: str, out: str,
                prefix: str, constants: dict[str, np.ndarray] | None = None
                ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], set[str]]:
    """The nodes replacing one stem conv, its border Add, the pointwise ``chain`` and the ``tail`` op: each piece
    (the composed conv on the mosaic's interior; the exact strips along the edges) runs the stem, the chain and
    the tail, and two Concats (the middle band's columns, then the bands) give ``out``; also the names of the
    copies of the model's own ops. ``centring``: the colour x* the strips are centred at (zero padding of the
    normalised frame) and the stem's bias plus sum(W) x*, for a stem with a border term. ``tail_pads``: the
    tail's own (top, left, bottom, right). Every name is under ``prefix`` (a fresh one)."""
    weight, strides, pads = stem.weight, list(stem.strides), list(stem.pads)
    st = Graph(fmt, prefix)
    copied: set[str] = set()
    c = st.const
    h, w = shape[2], shape[3]
    bias = list(stem.node.input[2:3])
    pt, pl, pb, pr = pads
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
            copy.name = f"{prefix}/{label}/{node_key(n)}"  # names may repeat; outputs do not
            for i, x in enumerate(copy.input):  # a Constant node's output may come later in the graph: a copy here
                copy.input[i] = names.get(x) or (c(f"const/{x}", node_constants[x]) if x in node_constants else x)
            for i, x in enumerate(copy.output):
                if x:
                    names[x] = copy.output[i] = f"{prefix}/{label}/{x}"
            copied.add(node_key(copy))
            if n is tail:
                for attr in copy.attribute:
                    if attr.name == "pads":
                        attr.ints[:] = [v if k else 0 for v, k in zip(tail_pads, keep)]
            st.nodes.append(copy)
        return names[out] if (chain or tail is not None) else y

    def strip(axis: int, start_px: int, stop_px: int, keep_rgb: tuple[int, int], edges: list[int], label: str) -> str:
        """The exact result along one edge: demosaic a strip of the mosaic, keep the pixels whose demosaic is the
        whole frame's, the stem with that edge's pads only (``edges``: top, left, bottom, right), then the chain
        and the tail."""
        part = crop(mosaic, [start_px], [stop_px], [axis], f"{label}_mosaic")
        strip_shape = list(shape)
        strip_shape[axis] = stop_px - start_px
        rgb = f"{prefix}/{label}_rgb"
        d_nodes, d_inits = demosaic(part, rgb, fmt, strip_shape, prefix=f"{prefix}/{label}")
        st.nodes.extend(d_nodes)
        st.inits.update({t.name: t for t in d_inits})
        kept = crop(rgb, [keep_rgb[0]], [keep_rgb[1]], [axis], f"{label}_keep")
        strip_bias = bias
        if centring is not None:  # zero padding of (frame - x*) is the original's zero padding
            kept = st.node("Sub", [kept, c("neutral", centring[0].reshape(1, 3, 1, 1).astype(np.float32))],
                           f"{label}_centred")
            strip_bias = [c("strip_B", centring[1].astype(np.float32))]
        y = st.node("Conv", [kept, c("stem_W", weight), *strip_bias], label, kernel_shape=list(weight.shape[2:]),
                    strides=strides, pads=[v if k else 0 for v, k in zip(pads, edges)])
        return finish(y, label, edges)

    (ra, rb), (ca, cb) = r.interior_px, q.interior_px
    interior = st.node("Conv", [crop(mosaic, [ra, ca], [rb, cb], [2, 3], "interior_px"), c("mosaic_W", p.kernel), *bias],
                       "interior", kernel_shape=list(p.kernel.shape[2:]), strides=strides, pads=[0, 0, 0, 0])
    middle = [finish(interior, "interior", [0, 0, 0, 0])]
    mid = ([r.before], [r.length - r.after], [2])
    left = strip(3, 0, q.lead_px, (0, q.lead_keep), [1, 1, 1, 0], "left")
    middle.insert(0, crop(left, *mid, "left_mid"))
    if q.after:
        right = strip(3, q.trail_px, w, (q.trail_keep, w - q.trail_px), [1, 0, 1, 1], "right")
        middle.append(crop(right, *mid, "right_mid"))
    bands = [strip(2, 0, r.lead_px, (0, r.lead_keep), [1, 1, 0, 1], "top"),
             st.node("Concat", middle, "middle", axis=3)]
    if r.after:
        bands.append(strip(2, r.trail_px, h, (r.trail_keep, h - r.trail_px), [0, 1, 1, 1], "bottom"))
    st.output("Concat", bands, out, "assembled", axis=2)
    return (*st.result(), copied)


