"""FP16 ONNX for TensorRT 11 (strongly typed) and as an option on 10.x: float32 I/O kept, numerically
sensitive ops kept in float32, and any node whose output overflows fp16 on the given frames too."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.core.contract import helper_outputs
from edgefold.core.frames import InputFeed
from edgefold.graph.names import names_by_key, with_unique_node_names
from edgefold.precision.weights import QUANTIZED_OPS

# reductions, softmax, normalisations, exponentials: where fp16 loses range or precision
SENSITIVE_OPS = ("ReduceMean", "ReduceSum", "ReduceProd", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare",
                 "Softmax", "LogSoftmax", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
                 "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Erf", "TopK", "NonMaxSuppression", "RoiAlign",
                 "Range", "CumSum")
FP16_SAFE_MAX = 32768.0  # half of fp16's 65504: headroom for frames brighter than the calibration set


def overflowing_nodes(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> list[str]:
    """Names of nodes with a float output whose magnitude exceeds FP16_SAFE_MAX on these frames (of a model whose
    nodes each have a name of their own: ``graph.names.with_unique_node_names``)."""
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
    return sorted({producer[n] for n, v in peak.items() if v > FP16_SAFE_MAX and n in producer})


def to_fp16(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> tuple[onnx.ModelProto, list[str]]:
    """(fp16 model, names of nodes kept in float32 because they overflow). The converter's block list is by
    name: every node gets a name of its own first (names may be missing or repeat), and the fp16 model keeps it."""
    from onnxconverter_common import float16

    model = with_unique_node_names(model)
    hot = overflowing_nodes(model, feed, frames)
    # edgefold's input Cast/recentre and any Cast to float32 (a model's own uint8 input, --no-fold) must keep
    # producing float32: the converter retypes their outputs but not their `to`, which onnxruntime rejects
    casts = [n.name for n in model.graph.node
             if n.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    name_of = names_by_key(model)
    keep = hot + [name_of[k] for k in helper_outputs(model) if k in name_of] + casts
    blocked_ops = list(dict.fromkeys(list(float16.DEFAULT_OP_BLOCK_LIST) + list(SENSITIVE_OPS)))
    out = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked_ops,
                                           node_block_list=keep)
    return out, hot


def float32_ops(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> how many nodes of a converted model still compute in float32 (a float32 output; Casts and
    the Q/DQ of an INT8 model aside): what a strongly typed TensorRT (11) runs in FP32, as the ONNX says."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)}
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    counts: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in ("Cast", "QuantizeLinear", "DequantizeLinear", "Constant", "Shape"):
            continue
        if n.op_type in QUANTIZED_OPS and len(n.input) > 1 and producer.get(n.input[1]) == "DequantizeLinear":
            continue  # an INT8 layer (its weight arrives through Q/DQ)
        if any(types.get(o) == onnx.TensorProto.FLOAT for o in n.output):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
