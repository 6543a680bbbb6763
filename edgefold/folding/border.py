"""Folding a channel affine map into a Conv, with the exact border term.

With ``n = A x + b`` and a conv ``W`` (groups g, bias beta) zero-padded in the *normalised* domain:

    conv0(n, W) + beta = conv0(x, W') + beta + conv0(1_valid, K)
    W'[o, j] = sum_{c in group(o)} W[o, c] A[c, j]        K[o] = sum_{c in group(o)} W[o, c] b[c]

because the original pads ``n`` with 0 where the folded conv pads ``x`` with 0. ``conv0(1_valid, K)``
equals ``sum(K)`` wherever every tap is inside the image and differs on a ring of width ~ pad / stride.
A tap (a, b) at output (i, j) is valid iff its row and its column are, so the map is separable:
``M = R^T K C`` with 0/1 validity matrices R (kh x H_out) and C (kw x W_out) - two MatMuls, no constant
that grows with the image area.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.folding.plan import BorderScheme, ConvFold, Correction, Lin, TinyConv


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
    """(top, bottom) band sizes of a validity matrix, or None if the bands leave no interior between them."""
    full = np.asarray(valid.all(axis=0)).reshape(-1)
    n = int(full.size)
    top = 0
    while top < n and not full[top]:
        top += 1
    bottom = 0
    while bottom < n - top and not full[n - 1 - bottom]:
        bottom += 1
    if top + bottom >= n or not full[top:n - bottom].all():
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
    rep_r = list(range(t)) + [t] + list(range(h_out - b, h_out))
    rep_c = list(range(lft)) + [lft] + list(range(w_out - rgt, w_out))
    # the interior value sum(K) goes into the main conv's bias; the tiny conv adds only the difference
    table = np.einsum("ai,oab,bj->oij", rows[:, rep_r], kernel, cols[:, rep_c]) - kernel.sum(axis=(1, 2))[:, None, None]
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
            corr = Correction(kernel, BorderScheme.STATIC_TINYCONV, rows, cols, conv_attrs, tiny)
            return done(beta + interior, corr, BorderScheme.STATIC_TINYCONV,
                        f"exact: {tiny.kernel.shape[2]}x{tiny.kernel.shape[3]} conv over ones at output resolution")
        corr = Correction(kernel, BorderScheme.STATIC_SEPARABLE, rows, cols, conv_attrs)
        return done(beta, corr, BorderScheme.STATIC_SEPARABLE,
                    f"exact: separable validity map, {rows.size + cols.size + kernel.size} constants")
    corr = Correction(kernel, BorderScheme.DYNAMIC_SEPARABLE, None, None, conv_attrs)
    return done(beta, corr, BorderScheme.DYNAMIC_SEPARABLE, "exact: validity map computed from the input shape at run time")


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
