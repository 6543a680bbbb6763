"""Folding a channel affine map into a Conv, with the exact border term.

With ``n = A x + b`` and a conv ``W`` (groups g, bias beta) zero-padded in the *normalised* domain:

    conv0(n, W) + beta = conv0(x, W') + beta + conv0(1_valid, K)
    W'[o, j] = sum_{c in group(o)} W[o, c] A[c, j]        K[o] = sum_{c in group(o)} W[o, c] b[c]

because the original pads ``n`` with 0 where the folded conv pads ``x`` with 0. ``conv0(1_valid, K)``
equals ``sum(K)`` wherever every tap is inside the image and differs on a ring of width ~ pad / stride.
A tap (a, b) at output (i, j) is valid iff its row and its column are, so the map is separable:
``M = R^T K C`` with 0/1 validity matrices R (kh x H_out) and C (kw x W_out) - two MatMuls, no constant
that grows with the image area.

At a static size the term is a tiny conv over ones, added to the conv's output - a full pass over the stem's
output for a term that is non-zero on a ring only. When a pool or conv follows the stem (through pointwise ops),
``plan_strips`` cuts the conv instead: the interior, where the bias holds the whole term, and strips along the
edges with their own small terms, each running the ops up to and including that pool or conv, joined by two
Concats where the tensor is smaller.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.folding.options import FoldOptions
from edgefold.folding.plan import BorderScheme, ConvFold, Correction, FoldPlan, Lin, StripPiece, Strips, TinyConv
from edgefold.graph.index import GraphIndex, attrs


def grouped_matrix(w2: np.ndarray, group: int) -> np.ndarray:
    """A grouped 1x1 conv (O, C/g) as a dense (O, C) channel matrix."""
    o, cg = w2.shape
    og = o // group
    m = np.zeros((o, cg * group))
    for g in range(group):
        m[g * og:(g + 1) * og, g * cg:(g + 1) * cg] = w2[g * og:(g + 1) * og]
    return m


def fold_weights(w: np.ndarray, group: int, lin: Lin) -> tuple[np.ndarray, np.ndarray, int]:
    """(W', K, new group) for a conv reading ``lin``; float64."""
    o, cg, kh, kw = w.shape
    a, b = lin.affine.matrix, lin.affine.offset
    j = a.shape[1]
    og = o // group
    w6 = w.astype(np.float64).reshape(group, og, cg, kh, kw)
    kernel = np.einsum("gocxy,gc->goxy", w6, b.reshape(group, cg)).reshape(o, kh, kw)
    if group > 1 and lin.affine.is_diagonal():
        # a per-channel scale keeps the grouping (depthwise stays depthwise)
        scale = np.diag(a).reshape(group, 1, cg, 1, 1)
        return (w6 * scale).reshape(w.shape), kernel, group
    new = np.einsum("gocxy,gcj->gojxy", w6, a.reshape(group, cg, j)).reshape(o, j, kh, kw)
    return new, kernel, 1


def same_pads(size: int, k: int, s: int, d: int, mode: str) -> tuple[int, int]:
    total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
    small = total // 2
    return (small, total - small) if mode == "SAME_UPPER" else (total - small, small)


def explicit_pads(attrs: dict, spatial: tuple[int, int] | None, kernel: tuple[int, int]) -> list[int] | None:
    """[top, left, bottom, right], or None when they depend on an unknown input size."""
    mode = attrs.get("auto_pad", b"NOTSET").decode()
    if mode in ("NOTSET", ""):
        return list(attrs.get("pads", [0, 0, 0, 0]))
    if mode == "VALID":
        return [0, 0, 0, 0]
    if spatial is None:
        return None
    strides = attrs.get("strides", [1, 1])
    dil = attrs.get("dilations", [1, 1])
    (t, bt), (lt, r) = (same_pads(spatial[i], kernel[i], strides[i], dil[i], mode) for i in range(2))
    return [t, lt, bt, r]


def validity(size: int, k: int, s: int, d: int, pad_begin: int, pad_end: int) -> np.ndarray:
    """(k, out) 0/1 matrix: tap a of output i reads a pixel inside the image."""
    out = (size + pad_begin + pad_end - ((k - 1) * d + 1)) // s + 1
    pos = np.arange(out)[None, :] * s - pad_begin + np.arange(k)[:, None] * d
    return ((pos >= 0) & (pos < size)).astype(np.float64)


def _bands(valid: np.ndarray) -> tuple[int, int] | None:
    """(top, bottom) band sizes of a validity matrix: the leading outputs miss their first taps, the trailing ones
    their last taps, every output between has all of them; None otherwise (an output missing both)."""
    v = np.asarray(valid, bool)
    n = v.shape[1]
    top_band, bottom_band = ~v[0] & v[-1], v[0] & ~v[-1]
    top = int(np.argmin(top_band)) if not top_band.all() else n
    bottom = int(np.argmin(bottom_band[::-1])) if not bottom_band.all() else n
    if top + bottom > n or not v[:, top:n - bottom].all():
        return None
    return top, bottom


def _class_matrix(top: int, bottom: int) -> np.ndarray:
    """(classes x L): which taps u of a length-L kernel over zero-padded ones land inside, per row class.

    Classes: the top band rows, one interior row, the bottom band rows (in output order)."""
    length = top + bottom + 1
    u = np.arange(length)
    rows = [u >= top - i for i in range(top)] + [np.ones(length, bool)]
    rows += [u <= top + bottom - 1 - m for m in range(bottom)]
    return np.array(rows, dtype=np.float64)


def tiny_conv(kernel: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: tuple[int, int],
              strides: list[int]) -> TinyConv | None:
    """Solve the small kernel whose conv over zero-padded ones equals the border term, or None."""
    br, bc = _bands(rows), _bands(cols)
    if br is None or bc is None:
        return None
    (t, b), (lft, rgt) = br, bc
    h_out, w_out = rows.shape[1], cols.shape[1]
    # one output per class: the band outputs and an interior one (all taps inside; there may be none)
    rows_cls = np.concatenate([rows[:, :t], np.ones((rows.shape[0], 1)), rows[:, h_out - b:]], axis=1)
    cols_cls = np.concatenate([cols[:, :lft], np.ones((cols.shape[0], 1)), cols[:, w_out - rgt:]], axis=1)
    # the interior value sum(K) goes into the main conv's bias; the tiny conv adds only the difference
    table = np.einsum("ai,oab,bj->oij", rows_cls, kernel, cols_cls) - kernel.sum(axis=(1, 2))[:, None, None]
    pr, pc = _class_matrix(t, b), _class_matrix(lft, rgt)
    try:
        k = np.linalg.solve(pr, np.linalg.solve(pc, table.transpose(0, 2, 1)).transpose(0, 2, 1))
    except np.linalg.LinAlgError:
        return None
    if not np.allclose(np.einsum("iu,ouv,jv->oij", pr, k, pc), table, rtol=1e-9, atol=1e-9 * (np.abs(table).max() + 1)):
        return None
    counts = [-(-size[i] // strides[i]) for i in range(2)]
    ends = tuple(min(size[i], (n - 1) * strides[i] + 1) for i, n in enumerate((h_out, w_out)))
    fill = tuple(max(0, n - counts[i]) for i, n in enumerate((h_out, w_out)))
    return TinyConv(k[:, None], (t, lft, b, rgt), ends, (strides[0], strides[1]), fill)  # type: ignore[arg-type]


def plan_conv(node_id: int, name: str, lin: Lin, w: np.ndarray, bias: np.ndarray | None, attrs: dict,
              spatial: tuple, border_mode: str, opset: int = 17) -> ConvFold:
    group = int(attrs.get("group", 1))
    new_w, kernel, new_group = fold_weights(w, group, lin)
    beta = bias.astype(np.float64) if bias is not None else np.zeros(w.shape[0])
    kh, kw = w.shape[2:]
    static = tuple(spatial) if all(isinstance(s, int) for s in spatial) else None
    pads = explicit_pads(attrs, static, (kh, kw))
    interior = kernel.sum(axis=(1, 2))

    def done(bias_out: np.ndarray, correction: Correction | None, scheme: BorderScheme, note: str) -> ConvFold:
        keep_bias = bias is not None or bool(np.any(bias_out))
        return ConvFold(node_id, name, lin.raw, lin.affine, new_w.astype(w.dtype),
                        bias_out.astype(w.dtype) if keep_bias else None, new_group, tuple(w.shape),
                        correction, scheme, note)

    if not np.any(kernel):
        return done(beta, None, BorderScheme.NONE_NEEDED, "the map has no offset: zero padding is the same in both domains")
    if pads is not None and not any(pads):
        return done(beta + interior, None, BorderScheme.NONE_NEEDED, "no padding: every tap is inside the image")
    if border_mode == "approx":
        return done(beta + interior, None, BorderScheme.APPROX, "border ring left uncorrected (--border approx)")
    strides = list(attrs.get("strides", [1, 1]))
    dil = list(attrs.get("dilations", [1, 1]))
    conv_attrs = {"strides": strides, "dilations": dil, "pads": pads,
                  "auto_pad": attrs.get("auto_pad", b"NOTSET").decode()}
    if static is not None and pads is not None:
        rows = validity(static[0], kh, strides[0], dil[0], pads[0], pads[2])
        cols = validity(static[1], kw, strides[1], dil[1], pads[1], pads[3])
        if rows.all() and cols.all():
            return done(beta + interior, None, BorderScheme.NONE_NEEDED, "every tap is inside the image at this size")
        tiny = tiny_conv(kernel, rows, cols, static, strides) if opset >= 11 else None
        if tiny is not None:
            corr = Correction(kernel, BorderScheme.STATIC_TINYCONV, rows, cols, conv_attrs, tiny, static)
            return done(beta + interior, corr, BorderScheme.STATIC_TINYCONV,
                        f"exact: {tiny.kernel.shape[2]}x{tiny.kernel.shape[3]} conv over ones at output resolution")
        corr = Correction(kernel, BorderScheme.STATIC_SEPARABLE, rows, cols, conv_attrs)
        return done(beta, corr, BorderScheme.STATIC_SEPARABLE,
                    f"exact: separable validity map, {rows.size + cols.size + kernel.size} constants")
    corr = Correction(kernel, BorderScheme.DYNAMIC_SEPARABLE, None, None, conv_attrs)
    return done(beta, corr, BorderScheme.DYNAMIC_SEPARABLE, "exact: validity map computed from the input shape at run time")


def correction_macs(fold: ConvFold, out_hw: tuple | None) -> int | None:
    """Multiply-adds the border term costs beyond the folded conv on the frame (for the report), or None when
    the output size is unknown: a tiny conv over the whole output, the strips' terms plus the conv outputs the
    pieces compute twice, or the separable form's two MatMuls."""
    corr = fold.correction
    if corr is None:
        return 0
    if corr.strips is not None:
        return sum(int(p.tiny.kernel.size) * p.outputs for p in corr.strips.pieces if p.tiny is not None) \
            + corr.strips.extra_outputs * int(fold.weight.size)
    if out_hw is None or not all(isinstance(v, int) for v in out_hw):
        return None
    h, w = out_hw
    if corr.tiny is not None:
        return int(corr.tiny.kernel.size) * h * w
    o, kh, kw = corr.kernel.shape
    return o * h * kh * kw + o * h * kw * w


# ---- graph pieces (protos built here, inserted by apply.py) ----------------------------------------
def correction_nodes(prefix: str, corr: Correction, raw: str, out: str, dtype: np.dtype
                     ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing the (1, O, H_out, W_out) border term ``out`` from the raw conv input ``raw``."""
    o, kh, kw = corr.kernel.shape
    if corr.tiny is not None:
        return _tiny_nodes(prefix, corr.tiny, raw, out, dtype)
    inits = [numpy_helper.from_array(corr.kernel.reshape(1, o, kh, kw).astype(dtype), f"{prefix}/border_K")]
    nodes: list[onnx.NodeProto] = []
    if corr.scheme == BorderScheme.STATIC_SEPARABLE:
        assert corr.rows is not None and corr.cols is not None
        inits += [numpy_helper.from_array(np.ascontiguousarray(corr.rows.T).astype(dtype), f"{prefix}/border_Rt"),
                  numpy_helper.from_array(corr.cols.astype(dtype), f"{prefix}/border_C")]
        rt, cm = f"{prefix}/border_Rt", f"{prefix}/border_C"
    else:
        a = corr.conv_attrs
        s, d, p = a["strides"], a["dilations"], a["pads"]
        eye_r = np.zeros((kh, 1, kh, 1), dtype)
        eye_r[np.arange(kh), 0, np.arange(kh), 0] = 1
        eye_c = np.zeros((kw, 1, 1, kw), dtype)
        eye_c[np.arange(kw), 0, 0, np.arange(kw)] = 1
        inits += [numpy_helper.from_array(eye_r, f"{prefix}/border_eye_rows"),
                  numpy_helper.from_array(eye_c, f"{prefix}/border_eye_cols"),
                  numpy_helper.from_array(np.array([2], np.int64), f"{prefix}/border_axis_h"),
                  numpy_helper.from_array(np.array([3], np.int64), f"{prefix}/border_axis_w"),
                  numpy_helper.from_array(np.array([1, 1], np.int64), f"{prefix}/border_ones2"),
                  numpy_helper.from_array(np.array([1], np.int64), f"{prefix}/border_one")]
        one = helper.make_tensor("value", onnx.TensorProto.FLOAT if dtype == np.float32 else
                                 helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), [1], [1.0])

        def pads_for(axis: int) -> dict:
            if a["auto_pad"] not in ("NOTSET", ""):
                return {"auto_pad": a["auto_pad"]}
            return {"pads": [p[0], 0, p[2], 0] if axis == 0 else [0, p[1], 0, p[3]]}

        n = prefix
        nodes += [
            helper.make_node("Shape", [raw], [f"{n}/border_shape"], name=f"{n}/border_shape"),
            helper.make_node("Gather", [f"{n}/border_shape", f"{n}/border_axis_h"], [f"{n}/border_h"],
                             name=f"{n}/border_h", axis=0),
            helper.make_node("Gather", [f"{n}/border_shape", f"{n}/border_axis_w"], [f"{n}/border_w"],
                             name=f"{n}/border_w", axis=0),
            helper.make_node("Concat", [f"{n}/border_ones2", f"{n}/border_h", f"{n}/border_one"],
                             [f"{n}/border_rows_shape"], name=f"{n}/border_rows_shape", axis=0),
            helper.make_node("Concat", [f"{n}/border_ones2", f"{n}/border_one", f"{n}/border_w"],
                             [f"{n}/border_cols_shape"], name=f"{n}/border_cols_shape", axis=0),
            helper.make_node("ConstantOfShape", [f"{n}/border_rows_shape"], [f"{n}/border_rows_ones"],
                             name=f"{n}/border_rows_ones", value=one),
            helper.make_node("ConstantOfShape", [f"{n}/border_cols_shape"], [f"{n}/border_cols_ones"],
                             name=f"{n}/border_cols_ones", value=one),
            helper.make_node("Conv", [f"{n}/border_rows_ones", f"{n}/border_eye_rows"], [f"{n}/border_rows"],
                             name=f"{n}/border_rows", kernel_shape=[kh, 1], strides=[s[0], 1],
                             dilations=[d[0], 1], **pads_for(0)),
            helper.make_node("Conv", [f"{n}/border_cols_ones", f"{n}/border_eye_cols"], [f"{n}/border_cols"],
                             name=f"{n}/border_cols", kernel_shape=[1, kw], strides=[1, s[1]],
                             dilations=[1, d[1]], **pads_for(1)),
            # (1, kh, H_out, 1) -> (1, 1, H_out, kh);  (1, kw, 1, W_out) -> (1, 1, kw, W_out)
            helper.make_node("Transpose", [f"{n}/border_rows"], [f"{n}/border_Rt"], name=f"{n}/border_Rt",
                             perm=[0, 3, 2, 1]),
            helper.make_node("Transpose", [f"{n}/border_cols"], [f"{n}/border_C"], name=f"{n}/border_C",
                             perm=[0, 2, 1, 3]),
        ]
        rt, cm = f"{n}/border_Rt", f"{n}/border_C"
    nodes += [
        helper.make_node("MatMul", [rt, f"{prefix}/border_K"], [f"{prefix}/border_RK"], name=f"{prefix}/border_RK"),
        helper.make_node("MatMul", [f"{prefix}/border_RK", cm], [out], name=f"{prefix}/border_map"),
    ]
    return nodes, inits


def _tiny_nodes(prefix: str, tiny: TinyConv, raw: str, out: str, dtype: np.dtype
                ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """ones (N, 1, H_out, W_out) from a strided slice of the input as ``x * 0 + 1``, then the tiny conv.

    Note: the interior value ``sum(K)`` is in the main conv's bias; this term is zero in the interior."""
    n = prefix

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), f"{n}/{name}"))
        return f"{n}/{name}"

    inits: list[onnx.TensorProto] = []
    starts = const("ones_starts", np.zeros(3, np.int64))
    ends = const("ones_ends", np.array([1, *tiny.slice_ends], np.int64))
    axes = const("ones_axes", np.array([1, 2, 3], np.int64))
    steps = const("ones_steps", np.array([1, *tiny.slice_steps], np.int64))
    nodes = [
        helper.make_node("Slice", [raw, starts, ends, axes, steps], [f"{n}/ones_grid"], name=f"{n}/ones_grid"),
        helper.make_node("Mul", [f"{n}/ones_grid", const("zero", np.array(0, dtype))], [f"{n}/zeros"], name=f"{n}/zeros"),
        helper.make_node("Add", [f"{n}/zeros", const("one", np.array(1, dtype))], [f"{n}/ones"], name=f"{n}/ones"),
    ]
    ones = f"{n}/ones"
    if any(tiny.fill):
        pads = const("ones_fill", np.array([0, 0, 0, 0, 0, 0, tiny.fill[0], tiny.fill[1]], np.int64))
        nodes.append(helper.make_node("Pad", [ones, pads, f"{n}/one"], [f"{n}/ones_full"], name=f"{n}/ones_full",
                                      mode="constant"))
        ones = f"{n}/ones_full"
    kernel = const("border_tiny_K", tiny.kernel.astype(dtype))
    nodes.append(helper.make_node("Conv", [ones, kernel], [out], name=f"{n}/border_tinyconv",
                                  kernel_shape=list(tiny.kernel.shape[2:]), pads=list(tiny.pads)))
    return nodes, inits


# ---- strips: the border term on the ring only ----------------------------------------------------------------
# ops that act on each pixel alone when their other inputs are constants with no spatial extent: each piece can
# run them, so the pieces are joined after the pool or conv they lead to
POINTWISE = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu", "Tanh", "Softplus",
             "PRelu", "BatchNormalization", "Mul", "Add", "Sub", "Div", "Identity"}


# below this many stem outputs per channel the strips' extra nodes cost more than the tiny conv's pass (ResNet
# stem + max pool, onnxruntime CPU, 1 thread: 64^2 and 96^2 frames slower, 128^2 and 160^2 even, 224^2 up faster)
STRIPS_MIN_OUTPUTS = 80 * 80


def with_strips(index: GraphIndex, plan: FoldPlan, options: FoldOptions) -> FoldPlan:
    """``plan`` with each ``STATIC_TINYCONV`` conv that a pool or conv follows cut into strips (``plan_strips``).
    Not for a camera front end or an INT8 build's recentred input: those compose with the tiny conv's form."""
    if options.camera or options.raw_offset or options.border != "exact":
        return plan
    chains = tuple(dataclasses.replace(chain, convs=tuple(
        (plan_strips(index, f) if f.border is BorderScheme.STATIC_TINYCONV else None) or f for f in chain.convs))
        for chain in plan.chains)
    return dataclasses.replace(plan, chains=chains)


def plan_strips(index: GraphIndex, fold: ConvFold) -> ConvFold | None:
    """``fold`` (a ``STATIC_TINYCONV`` conv) cut into the interior and exact edge strips joined after the pool or
    conv that follows it, or None when nothing suitable follows or the frame is too small."""
    corr = fold.correction
    if corr is None or corr.tiny is None or corr.rows is None or corr.cols is None \
            or corr.rows.shape[1] * corr.cols.shape[1] < STRIPS_MIN_OUTPUTS:
        return None
    conv = index.nodes[fold.node_id]
    found = _tail(index, conv)
    if found is None:
        return None
    chain, tail_id, windows, tail_pads = found
    a = corr.conv_attrs
    s, d, p = a["strides"], a["dilations"], a["pads"]
    kh, kw = fold.old_weight_shape[2:]
    if corr.size is None:
        return None
    size = corr.size
    r = _strip_axis(size[0], (kh - 1) * d[0] + 1, s[0], p[0], p[2], windows[0])
    c = _strip_axis(size[1], (kw - 1) * d[1] + 1, s[1], p[1], p[3], windows[1])
    if r is None or c is None:
        return None
    tail = index.nodes[tail_id]
    tail_channels = index.initializers[tail.input[1]].dims[0] if tail.op_type == "Conv" else fold.weight.shape[0]
    if 2 * tail_channels * r.length * c.length > corr.kernel.shape[0] * corr.rows.shape[1] * corr.cols.shape[1]:
        return None  # the Concats would copy about as much as the tiny conv's pass over the stem output costs
    h, w = size
    specs: list[tuple[str, tuple[int, int], tuple[int, int], tuple[int, ...]]] = []
    if r.before:
        specs.append(("top", (0, 0), (r.lead_px, w), (1, 1, 0, 1)))
    if c.before:
        specs.append(("left", (r.interior_px[0], 0), (r.interior_px[1], c.lead_px), (0, 1, 0, 0)))
    specs.append(("interior", (r.interior_px[0], c.interior_px[0]), (r.interior_px[1], c.interior_px[1]),
                  (0, 0, 0, 0)))
    if c.after:
        specs.append(("right", (r.interior_px[0], c.trail_px), (r.interior_px[1], w), (0, 0, 0, 1)))
    if r.after:
        specs.append(("bottom", (r.trail_px, 0), (h, w), (0, 1, 1, 1)))
    pieces = []
    for label, starts, ends, edges in specs:
        pads = tuple(v * e for v, e in zip(p, edges))
        ph, pw = ends[0] - starts[0], ends[1] - starts[1]
        rv = validity(ph, kh, s[0], d[0], pads[0], pads[2])
        cv = validity(pw, kw, s[1], d[1], pads[1], pads[3])
        tiny = None
        if not (rv.all() and cv.all()):
            tiny = tiny_conv(corr.kernel, rv, cv, (ph, pw), s)
            if tiny is None:
                return None
        pieces.append(StripPiece(label, starts, ends, pads, tuple(v * e for v, e in zip(tail_pads, edges)),  # type: ignore[arg-type]
                                 tiny, rv.shape[1] * cv.shape[1]))
    strips = Strips(tuple(pieces), tuple(chain), tail_id,
                    sum(x.outputs for x in pieces) - corr.rows.shape[1] * corr.cols.shape[1])
    note = (f"exact: the conv on the interior, {len(pieces) - 1} edge strips with their own border terms, joined "
            f"after {index.node_label(tail)}")
    return ConvFold(fold.node_id, fold.node_name, fold.raw, fold.affine, fold.weight, fold.bias, fold.group,
                    fold.old_weight_shape, Correction(corr.kernel, BorderScheme.STATIC_STRIPS, corr.rows, corr.cols,
                                                      corr.conv_attrs, corr.tiny, size, strips),
                    BorderScheme.STATIC_STRIPS, note, fold.attrs_override)


@dataclass(frozen=True)
class _Axis:
    length: int  # tail outputs
    before: int  # from the leading strip
    after: int  # from the trailing strip
    interior_px: tuple[int, int]
    lead_px: int
    trail_px: int


def _strip_axis(n: int, k: int, s: int, pb: int, pa: int, tail: tuple[int, int, int, int]) -> _Axis | None:
    """Where to cut one axis of length ``n`` for a conv (effective kernel ``k``, stride, pads) followed by a
    window op ``tail`` (kernel, stride, pads): the tail outputs whose window reads only conv outputs with no
    padded tap come from the interior; the others from a strip at each edge. None if no interior is left."""
    kt, st, tb, ta = tail
    conv_len = (n + pb + pa - k) // s + 1
    length = (conv_len + tb + ta - kt) // st + 1
    c0, c1 = -(-pb // s), min(conv_len - 1, (n - k + pb) // s)  # the conv outputs with no padded tap
    q0, q1 = max(0, -(-(c0 + tb) // st)), min(length - 1, (c1 + tb - kt + 1) // st)
    if q0 > q1 or conv_len < 1 or length < 1:
        return None
    first, last = q0 * st - tb, q1 * st - tb + kt - 1  # the conv outputs the interior's tail outputs read
    lead = ((q0 - 1) * st - tb + kt - 1) * s - pb + k if q0 else 0
    trail_out = (q1 + 1) * st - tb
    trail = trail_out * s - pb if q1 < length - 1 else n
    if lead > n or (q0 and lead < 1) or trail < 0 or (q1 < length - 1 and trail_out < 0):
        return None
    return _Axis(length, q0, length - 1 - q1, (first * s - pb, last * s - pb + k), lead, trail)


def _tail(index: GraphIndex, conv: onnx.NodeProto
          ) -> tuple[list[int], int, tuple[tuple[int, int, int, int], ...], tuple[int, int, int, int]] | None:
    """The pointwise nodes after ``conv`` and the pool or conv they lead to: (their ids, its id, its window per
    axis (kernel, stride, pad before, pad after), its pads), or None. Every tensor on the way has one reader and
    is not a graph output; the other inputs are initialisers with no spatial extent."""
    ids = {id(n): i for i, n in enumerate(index.nodes)}
    chain: list[int] = []
    cur = conv.output[0]
    while cur not in index.output_names:
        readers = index.consumers.get(cur, [])
        if len(readers) != 1 or readers[0].input[0] != cur or cur in readers[0].input[1:]:
            return None
        node = readers[0]
        outs = [o for o in node.output if o]
        if node.op_type in ("MaxPool", "AveragePool", "Conv"):
            return _window_tail(index, node, outs, chain, ids[id(node)])
        if node.op_type not in POINTWISE or len(outs) != 1 or len(node.output) != 1:
            return None
        for name in node.input[1:]:
            t = index.initializers.get(name) if name else None
            # per channel at most: a 1-D constant of n > 1 values would broadcast along the width
            if name and (t is None or (node.op_type != "BatchNormalization" and int(np.prod(t.dims[-2:])) != 1)):
                return None
        chain.append(ids[id(node)])
        cur = node.output[0]
    return None


def _window_tail(index: GraphIndex, node: onnx.NodeProto, outs: list[str], chain: list[int], node_id: int):
    a = attrs(node)
    kernel = a.get("kernel_shape")
    if node.op_type == "Conv":
        if not all(i in index.initializers for i in node.input[1:] if i):
            return None
        if kernel is None:
            kernel = list(index.initializers[node.input[1]].dims[2:])
    if (len(outs) != 1 or node.output[0] != outs[0] or a.get("ceil_mode", 0)
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or kernel is None or len(kernel) != 2):
        return None
    strides, dil = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    windows = tuple(((kernel[i] - 1) * dil[i] + 1, strides[i], pads[i], pads[i + 2]) for i in range(2))
    return chain, node_id, windows, pads


def strip_nodes(prefix: str, fold: ConvFold, nodes: list[onnx.NodeProto], raw: str, dtype: np.dtype
                ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], list[onnx.NodeProto]]:
    """The nodes of a ``STATIC_STRIPS`` fold, replacing the (already folded) conv ``nodes[fold.node_id]`` and the
    nodes after it up to the tail: those nodes become the interior piece and the strips run copies. Also the
    helper nodes among them (crops, border terms, Concats). ``prefix`` is a name no tensor or node of the model
    lives under; every name made here is under it."""
    assert fold.correction is not None and fold.correction.strips is not None
    strips = fold.correction.strips
    own = [nodes[fold.node_id]] + [nodes[i] for i in strips.chain] + [nodes[strips.tail]]
    pristine = []
    for n in own:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        pristine.append(copy)
    out = own[-1].output[0]
    inits: list[onnx.TensorProto] = []
    new: list[onnx.NodeProto] = []
    helpers: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        if not any(t.name == f"{prefix}/{name}" for t in inits):
            inits.append(numpy_helper.from_array(value, f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    def helper_node(op: str, inputs: list[str], output: str, name: str | None = None, **kw) -> str:
        new.append(helper.make_node(op, inputs, [output], name=name or output, **kw))
        helpers.append(new[-1])
        return output

    def set_pads(node: onnx.NodeProto, pads: tuple[int, ...]) -> None:
        for attr in [x for x in node.attribute if x.name in ("pads", "auto_pad")]:
            node.attribute.remove(attr)
        node.attribute.append(helper.make_attribute("pads", list(pads)))

    joined: dict[str, list[str]] = {"middle": [], "bands": []}
    for piece in strips.pieces:
        label = f"{prefix}/{piece.label}"
        crop = helper_node("Slice", [raw, const(f"{piece.label}/starts", np.array(piece.starts, np.int64)),
                                     const(f"{piece.label}/ends", np.array(piece.ends, np.int64)),
                                     const("axes", np.array([2, 3], np.int64))], f"{label}/pixels")
        if piece.label == "interior":  # the model's own nodes; the tail's output is now the joined one's part
            ops = own
            ops[-1].output[0] = f"{out}/interior"
        else:
            ops, names = [], dict[str, str]()
            for n in pristine:
                copy = onnx.NodeProto()
                copy.CopyFrom(n)
                copy.input[:] = [names.get(i, i) for i in copy.input]
                copy.output[:] = [names.setdefault(o, f"{label}/{o}") if o else o for o in copy.output]
                copy.name = copy.output[0]  # unique, as its output is: the model's node names may repeat
                ops.append(copy)
        ops[0].input[0] = crop
        set_pads(ops[0], piece.pads)
        set_pads(ops[-1], piece.tail_pads)
        if piece.tiny is not None:  # this piece's own border term, added to its conv's output
            conv_out = ops[0].output[0]
            ops[0].output[0] = f"{label}/conv"
            term_nodes, term_inits = _tiny_nodes(label, piece.tiny, crop, f"{label}/border_term", dtype)
            inits.extend(term_inits)
            new.extend(term_nodes + [ops[0]])
            helpers.extend(term_nodes)
            helper_node("Add", [f"{label}/conv", f"{label}/border_term"], conv_out, name=f"{label}/border_add")
            new.extend(ops[1:])
        else:
            new.extend(ops)
        joined[piece.band].append(ops[-1].output[0])
    middle = helper_node("Concat", joined["middle"], f"{prefix}/middle", axis=3)
    bands = joined["bands"]
    bands.insert(1 if strips.pieces[0].label == "top" else 0, middle)
    helper_node("Concat", bands, out, name=f"{prefix}/assembled", axis=2)
    return new, inits, helpers
