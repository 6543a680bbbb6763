"""FP16 ONNX for TensorRT 11 (strongly typed) and as an option on 10.x: float32 I/O kept, numerically
sensitive ops kept in float32, and any node whose output overflows fp16 on the given frames too.

The same conversion writes the unquantised rest of an INT8 Q/DQ model in float16 for TensorRT 11 (what ModelOpt
does with ``high_precision_dtype="fp16"``): Q/DQ scales in float16, which QuantizeLinear/DequantizeLinear take
from opset 19 (ONNX, onnxruntime; TensorRT 11's parser reads opsets 9-25), so the model is upgraded first.
``census`` says afterwards what runs in which precision, and why a node stays float32."""
from __future__ import annotations

import json
import warnings

import numpy as np
import onnx

from edgefold.core.contract import Meta, helper_outputs, meta_json, write_meta
from edgefold.core.frames import InputFeed
from edgefold.graph.names import FreshNames, names_by_key, node_key, with_unique_node_names
from edgefold.precision.weights import QUANTIZED_OPS

# reductions, softmax, normalisations, exponentials: where fp16 loses range or precision
SENSITIVE_OPS = ("ReduceMean", "ReduceSum", "ReduceProd", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare",
                 "Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                 "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Erf", "TopK", "NonMaxSuppression", "RoiAlign",
                 "Range", "CumSum")
FP16_MAX = float(np.finfo(np.float16).max)  # the converter's clamp of initializers (its default 1e4 changes 2e4)
FP16_SAFE_MAX = 32768.0  # half of fp16's 65504: headroom for frames brighter than the calibration set
# onnxconverter-common's default block list is ML-operator ops (never in a CNN) and ops onnxruntime once had no
# float16 kernels for; TensorRT runs these in FP16 (onnxruntime's CPU runs them through its own Casts)
TENSORRT_HALF_OPS = ("Resize", "Upsample", "Min", "Max")
HALF_QDQ_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take float16 scales
FLOAT32_OPERANDS = {"Resize": (2,), "Upsample": (1,)}  # op -> inputs that are float32 whatever the data's type


def overflowing_nodes(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> list[str]:
    """Names of nodes with a float output whose magnitude exceeds FP16_SAFE_MAX on these frames, and of the
    nodes that read such a tensor or such an initializer (a BatchNormalization whose running variance is 1e7:
    in float16 it reads inf, whichever node made it), of a model whose nodes each have a name of their own
    (``graph.names.with_unique_node_names``)."""
    from onnx import numpy_helper

    from edgefold.backends.ort import session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    producer = {}
    for node in probe.graph.node:
        for out in node.output:
            if out and out not in existing:
                probe.graph.output.add(name=out)
            producer[out] = node.name
    sess = session(probe)
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}
    for frame in frames:
        for name, value in zip(names, sess.run(names, {feed.name: feed.tensor(frame)})):
            arr = np.asarray(value)
            if arr.dtype.kind == "f" and arr.size:
                peak[name] = max(peak.get(name, 0.0), float(np.abs(arr[np.isfinite(arr)]).max(initial=0.0)))
    for t in model.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            value = numpy_helper.to_array(t)
            peak[t.name] = float(np.abs(value[np.isfinite(value)]).max(initial=0.0))
    loud = {n for n, v in peak.items() if v > FP16_SAFE_MAX}
    readers = {node.name for node in model.graph.node if loud & set(node.input)}
    return sorted({producer[n] for n in loud if n in producer} | readers)


def float32_op_types() -> list[str]:
    """The op types every conversion keeps in float32."""
    from onnxconverter_common import float16

    default = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op not in TENSORRT_HALF_OPS]
    return list(dict.fromkeys(default + list(SENSITIVE_OPS)))


def to_fp16(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> tuple[onnx.ModelProto, list[str]]:
    """(fp16 model, names of nodes kept in float32 because they overflow). The converter's block list is by
    name: every node gets a name of its own first (names may be missing or repeat), and the fp16 model keeps it.
    The model records the overflowing nodes by output (``Meta.FP16_OVERFLOW``) for ``census``. A Q/DQ model
    needs opset >= HALF_QDQ_OPSET (its scales become float16)."""
    from onnxconverter_common import float16

    model = with_unique_node_names(model)
    hot = overflowing_nodes(model, feed, frames)
    # Constant nodes the converter would retype even where their reader stays float32: loud values, and the
    # float32-only operands (paddle2onnx writes Resize scales as Constant nodes) - initializers instead
    operands = {n.input[pos] for n in model.graph.node for pos in FLOAT32_OPERANDS.get(n.op_type, ())
                if pos < len(n.input)}
    model = _constants_as_initializers(model, {n.name for n in model.graph.node
                                               if n.name in hot or set(n.output) & operands})
    names = {n.name for n in model.graph.node}
    hot = [n for n in hot if n in names]
    # edgefold's input Cast/recentre and any Cast to float32 (a model's own uint8 input, --no-fold) must keep
    # producing float32: the converter retypes their outputs but not their `to`, which onnxruntime rejects
    casts = [n.name for n in model.graph.node
             if n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    name_of = names_by_key(model)
    inits = {t.name for t in model.graph.initializer}
    # Resize/Upsample scales are float32 in every opset: restored below where they are initializers, else the node
    # stays float32 (the converter would retype a computed scales tensor too)
    computed = [n.name for n in model.graph.node for pos in FLOAT32_OPERANDS.get(n.op_type, ())
                if pos < len(n.input) and n.input[pos] and n.input[pos] not in inits]
    keep = hot + [name_of[k] for k in helper_outputs(model) if k in name_of] + casts + computed
    with warnings.catch_warnings():  # its per-value clamp warnings: float32 readers get the originals back below
        warnings.simplefilter("ignore", UserWarning)
        out = float16.convert_float_to_float16(model, max_finite_val=FP16_MAX, keep_io_types=True,
                                               op_block_list=float32_op_types(), node_block_list=keep)
    _float32_initializers(model, out, set(keep))
    _rekey(model, out, hot)
    return out, hot


def _constants_as_initializers(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy where each Constant node (with a tensor ``value``) among ``names`` is an initializer of the same
    name, which the conversion can keep float32 for a float32 reader."""
    from onnx import numpy_helper

    chosen = {n.name for n in model.graph.node if n.op_type == "Constant" and n.name in names
            and any(a.name == "value" for a in n.attribute)}
    if not chosen:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = []
    for n in out.graph.node:
        if n.name in chosen:
            value = numpy_helper.to_array(next(a.t for a in n.attribute if a.name == "value"))
            out.graph.initializer.append(numpy_helper.from_array(value, n.output[0]))
        else:
            kept.append(n)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out


def _float32_initializers(model: onnx.ModelProto, out: onnx.ModelProto, kept: set[str]) -> None:
    """The converter turns every float initializer into float16 (clamped to its range), also those a node kept in
    float32 reads through a Cast: such nodes, and the float32-only operands of converted ones (FLOAT32_OPERANDS),
    read a float32 copy of the original again (a BatchNormalization's running variance of 1e7 stays 1e7)."""
    original = {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    halves = {t.name for t in out.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16} & set(original)
    producer = {o: n for n in out.graph.node for o in n.output}
    fresh = FreshNames(out.graph)
    copies: dict[str, str] = {}
    for n in out.graph.node:
        for pos in range(len(n.input)) if n.name in kept else FLOAT32_OPERANDS.get(n.op_type, ()):
            name = n.input[pos] if pos < len(n.input) else ""
            cast = producer.get(name)
            if name not in halves and cast is not None and cast.op_type == "Cast" and n.name in kept:
                name = cast.input[0]
            if name not in halves:
                continue
            if name not in copies:
                copies[name] = fresh.name(f"{name}/float32")
                copy = onnx.TensorProto()
                copy.CopyFrom(original[name])
                copy.name = copies[name]
                out.graph.initializer.append(copy)
            n.input[pos] = copies[name]
    read = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
    unread = [n for n in out.graph.node if n.op_type == "Cast" and not set(n.output) & read]
    for n in unread:
        out.graph.node.remove(n)
    used = {i for n in out.graph.node for i in n.input}
    for t in [t for t in out.graph.initializer if t.name in halves and t.name not in used]:
        out.graph.initializer.remove(t)


def _rekey(model: onnx.ModelProto, out: onnx.ModelProto, hot: list[str]) -> None:
    """The converter renames the output of a node it keeps in float32 (``X`` -> ``X_output_cast_0``, the Cast
    after it produces ``X``): the metadata that knows nodes by first output follows them (node names are unique
    in both, the converter keeps them). The overflowing nodes are recorded too."""
    before = {n.name: node_key(n) for n in model.graph.node}
    now = {before[n.name]: node_key(n) for n in out.graph.node if n.name in before}
    values = {meta: json.dumps([now.get(k, k) for k in meta_json(out, meta, [])])
              for meta in (Meta.HELPER_NODES, Meta.FOLDED_CONVS) if meta_json(out, meta, None) is not None}
    values[Meta.FP16_OVERFLOW] = json.dumps([now.get(before[n], before[n]) for n in hot if n in before])
    write_meta(out, values)


FP32_REASONS = {  # why a node of a converted model computes in float32
    "helper": "the fold's own nodes (input cast, re-centring, border term), exact in float32",
    "overflow": f"it makes or reads a value beyond {FP16_SAFE_MAX:.0f} on the frames (FP16 overflows)",
    "op": "an op kept in float32 for range or precision (reductions, softmax, exp/log, ...)",
    "unconverted": "float32 in the ONNX (not converted to float16)",
}


def census(model: onnx.ModelProto) -> dict:
    """What a strongly typed TensorRT (11) runs in which precision, as the ONNX types it: INT8 layers (a weight
    through Q/DQ), FP16 nodes, FP32 nodes by op and by reason (FP32_REASONS). Casts, Q/DQ, Constant and Shape are
    not counted; nor are nodes without a float output (shape arithmetic)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    helpers, hot = set(helper_outputs(model)), set(meta_json(model, Meta.FP16_OVERFLOW, []))
    kept_ops = set(float32_op_types())
    converted = onnx.TensorProto.FLOAT16 in types.values()  # else nothing was converted, whatever the op
    int8 = fp16 = 0
    fp32: dict[str, dict[str, int]] = {}
    for n in model.graph.node:
        if n.op_type in ("Cast", "QuantizeLinear", "DequantizeLinear", "Constant", "Shape"):
            continue
        if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and producer.get(n.input[1]) == "DequantizeLinear":
            int8 += 1  # an INT8 layer (its weight arrives through Q/DQ)
        elif any(types.get(o) == onnx.TensorProto.FLOAT16 for o in n.output):
            fp16 += 1
        elif any(types.get(o) == onnx.TensorProto.FLOAT for o in n.output):
            key = node_key(n)
            why = ("helper" if key in helpers else "unconverted" if not converted else "op" if n.op_type in kept_ops
                   else "overflow" if key in hot else "unconverted")
            ops = fp32.setdefault(FP32_REASONS[why], {})
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"int8_layers": int8, "fp16_nodes": fp16, "fp32_nodes": sum(sum(v.values()) for v in fp32.values()),
            "fp32_why": fp32}


def float32_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> how many nodes of a converted model still compute in float32 (a float32 output; Casts and
    the Q/DQ of an INT8 model aside): what a strongly typed TensorRT (11) runs in FP32, as the ONNX says."""
    counts: dict[str, int] = {}
    for ops in census(model)["fp32_why"].values():
        for op, k in ops.items():
            counts[op] = counts.get(op, 0) + k
    return counts
