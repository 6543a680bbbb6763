"""The convolutions a chain ends in: pointwise convs on the way are absorbed into the map; the first spatial
conv gets the folded weights and its border term (border.py)."""
from __future__ import annotations

import dataclasses

import numpy as np

from edgefold.folding import adapter, border, shapefn
from edgefold.folding.ops.base import NodeCtx, Step, _with
from edgefold.folding.plan import BorderScheme, ConvFold, Lin
from edgefold.graph.index import attrs


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
    bad = [f"{k} {list(a[k])}" for k, least, n in (("strides", 1, 2), ("dilations", 1, 2), ("pads", 0, 4),
                                                   ("kernel_shape", 1, 2))
           if k in a and (len(a[k]) != n or any(int(v) < least for v in a[k]))]
    if bad or group < 1:
        raise ctx.refuse(f"has {', '.join(bad) or f'group {group}'} (a malformed model: two strides, dilations and "
                         f"kernel sizes of at least 1, four pads of at least 0, a group of at least 1)", lin)
    if w.shape[1] * group != lin.affine.out_channels:
        raise ctx.refuse(f"expects {w.shape[1] * group} input channels, the tensor has "
                         f"{lin.affine.out_channels}", lin)
    out = ctx.single_output(lin)
    pointwise = (w.shape[2:] == (1, 1) and all(s == 1 for s in a.get("strides", [1, 1]))
                 and not any(a.get("pads", [])) and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
                 and not lin.padded)
    override = None
    if lin.size_pads is not None:
        a, override = _same_padding(ctx, lin, a, w.shape[2:])
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
    backbone = _unpadded_backbone(ctx, lin, w, a, group)
    if backbone is not None:
        fold = _composed(ctx, lin, backbone)
    else:
        fold = border.plan_conv(ctx.node_id, ctx.node.name or out, lin, w, bias, a, _unpadded_size(ctx, lin),
                                ctx.border_mode, ctx.index.opset)
    if fold.border is BorderScheme.DYNAMIC_SEPARABLE and ctx.index.opset < 11:
        raise ctx.refuse(f"reads an image whose size is dynamic (or not inferable) at opset {ctx.index.opset}; "
                         f"the exact border term is "
                         f"built from opset-11 ops: fix the size with --input-size HxW, or convert the model "
                         f"(onnx.version_converter.convert_version(model, 13))", lin)
    if override is not None:
        fold = dataclasses.replace(fold, attrs_override={**(fold.attrs_override or {}), **override})
    return Step({}, terminal=fold)


# the ops that may read a channel lane: per-pixel arithmetic and the ops that give it its channel axis back


def _unpadded_backbone(ctx: NodeCtx, lin: Lin, w: np.ndarray, a: dict, group: int) -> int | None:
    """The node id of the conv B that alone reads this learned gray -> RGB adapter conv A (1 -> 3, stride 1,
    spatial kernel) with nothing between and no padding of its own: then B(A(x)) is one conv over A's input,
    exactly."""
    index = ctx.index
    if lin.affine.out_channels != 1 or w.shape[:2] != (3, 1) or group != 1 or w.shape[2:] == (1, 1) or lin.padded or \
            any(s != 1 for s in a.get("strides", [1, 1])) or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        return None
    out = ctx.node.output[0]
    readers = index.consumers.get(out, [])
    if out in index.output_names or len(readers) != 1:
        return None
    b = readers[0]
    b_attrs = attrs(b)
    if b.op_type != "Conv" or list(b.input).count(out) != 1 or b.input[0] != out or \
            b_attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or any(b_attrs.get("pads", [])) or \
            index.constant(b.input[1]) is None or (len(b.input) > 2 and b.input[2] and index.constant(b.input[2]) is None):
        return None
    return next(i for i, n in enumerate(index.nodes) if n is b)


def _composed(ctx: NodeCtx, lin: Lin, backbone_id: int) -> ConvFold:
    """Adapter and backbone conv as one conv over the adapter's (normalised) input, folded like any conv: the
    composite pads the image as the adapter did, so the border term covers the normalisation."""
    b_node = ctx.index.nodes[backbone_id]
    kernel, bias, new_attrs, _ = adapter.composite(ctx.index, ctx.node, b_node)
    fold = border.plan_conv(backbone_id, b_node.name or b_node.output[0], lin, kernel.astype(np.float32),
                            bias.astype(np.float32), new_attrs, _unpadded_size(ctx, lin), ctx.border_mode,
                            ctx.index.opset)
    w2 = ctx.index.constant(b_node.input[1])
    assert w2 is not None
    return dataclasses.replace(fold, attrs_override=new_attrs, old_weight_shape=tuple(w2.shape))


def _unpadded_size(ctx: NodeCtx, lin: Lin) -> tuple:
    """(H, W) of the tensor the folded conv reads (before a merged zero Pad); None where it is dynamic. From
    the walk's frame when the input's size is static (inference may not see through a Pad whose amounts were
    computed), else from the inferred shapes."""
    if lin.size_pads is not None:
        return (None, None)
    if lin.frame is not None and len(ctx.trials) == 1:
        size = shapefn.lin_shape(lin, ctx.trials[0])
        if size is not None and len(size) == 4:
            return size[2:]
    in_shape = ctx.index.shapes.get(ctx.input(0))
    spatial = tuple(in_shape[2:]) if in_shape and len(in_shape) == 4 else (None, None)
    if lin.zero_pads is not None:  # the conv now reads the unpadded tensor
        t, lft, bt, r = lin.zero_pads
        spatial = tuple(d - p0 - p1 if isinstance(d, int) else None
                        for d, p0, p1 in zip(spatial, (t, lft), (bt, r)))
    return spatial


def _same_padding(ctx: NodeCtx, lin: Lin, a: dict, kernel: tuple[int, int]) -> tuple[dict, dict]:
    """A Pad whose amounts are computed from the input's size, merged into the conv as ``auto_pad`` SAME_UPPER
    or SAME_LOWER - only when that is the same padding at every probe size (TF/timm "same" padding is). The
    folded conv then pads per size as the original did, and the border term follows it (computed from the
    input's shape at run time)."""
    assert lin.size_pads is not None
    strides, dil = list(a.get("strides", [1, 1])), list(a.get("dilations", [1, 1]))
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or any(a.get("pads", [])):
        raise ctx.refuse("reads a tensor zero-padded by amounts computed from the input's size and pads it again; "
                         "fix the size with --input-size HxW", lin)
    if any(d != 1 for d in dil):
        raise ctx.refuse("is dilated and reads a tensor zero-padded by amounts computed from the input's size "
                         "(auto_pad SAME with dilations is not portable); fix the size with --input-size HxW", lin)
    for mode in ("SAME_UPPER", "SAME_LOWER"):
        if all(border.same_pads(h, kernel[0], strides[0], 1, mode) == (t, b) and
               border.same_pads(w, kernel[1], strides[1], 1, mode) == (lft, r)
               for h, w, t, lft, b, r in lin.size_pads):
            return ({k: v for k, v in a.items() if k != "pads"} | {"auto_pad": mode.encode()},
                    {"auto_pad": mode, "pads": None})
    raise ctx.refuse("reads a tensor zero-padded by amounts computed from the input's size that are not the "
                     "conv's SAME padding at every size; fix the size with --input-size HxW", lin)
