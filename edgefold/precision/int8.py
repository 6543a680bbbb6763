"""INT8 by explicit quantisation (Q/DQ in the ONNX), calibrated on the CPU with onnxruntime, in the form
TensorRT accepts: symmetric int8 with zero point 0, per-channel weight scales on the output-channel axis,
per-tensor activation scales, no output Q/DQ (TensorRT's explicit quantisation takes Q/DQ pairs with
symmetric int8 and zero point 0 only; these are the settings ModelOpt hands to onnxruntime's quantiser).

Two ways to treat the folded first conv, which reads raw 0..255 pixels where symmetric int8 wastes half
its codes: ``recentre`` (the fold's raw_offset=-128 makes it read x - 128, quantised with scale 1.0 -
lossless for integer pixels) and ``float-first`` (the first conv stays in float). Both are measured.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgefold.core.contract import Meta, helper_outputs, meta_json
from edgefold.core.frames import InputFeed
from edgefold.errors import UsageError
from edgefold.graph.index import opset_of
from edgefold.graph.io import is_large, model_bytes_or_path
from edgefold.graph.names import names_by_key, with_unique_node_names
from edgefold.precision.weights import QUANTIZED_OPS, weights_as_initializers


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime's calibrator prints progress to stdout and warns through the root logger; the CLI shows
    its own progress bar and report instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class _Reader:
    """onnxruntime CalibrationDataReader over raw frames, with a progress bar."""

    def __init__(self, feed: InputFeed, frames: list[np.ndarray], show_progress: bool) -> None:
        from tqdm import tqdm

        self._it = iter(tqdm(frames, desc="calibrating", unit="frame", disable=not show_progress, leave=False))
        self.feed = feed

    def get_next(self):  # noqa: ANN201 - onnxruntime's reader protocol
        frame = next(self._it, None)
        return None if frame is None else {self.feed.name: self.feed.tensor(frame)}


def quantize(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray], strategy: str,
             method: str = "percentile", show_progress: bool = False) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    opset = opset_of(model)
    if opset < 13:
        raise UsageError(f"per-channel Q/DQ needs opset >= 13, the model has {opset}: upgrade it first")
    model = weights_as_initializers(model)  # per-channel scales whatever the weights' storage
    # the quantiser excludes nodes by name: a name of its own on every node (the metadata knows them by output)
    model = with_unique_node_names(model)
    name_of = names_by_key(model)
    exclude = [name_of[k] for k in helper_outputs(model) if k in name_of]
    overrides = {}
    if strategy == "float-first":
        exclude += [name_of[k] for k in meta_json(model, Meta.FOLDED_CONVS, []) if k in name_of]
    elif strategy == "recentre":
        raw = meta_json(model, Meta.RAW_TENSORS, [])
        offsets = meta_json(model, Meta.RAW_OFFSET, [])
        if not raw or not offsets or any(o != -128 for o in offsets):
            raise UsageError("recentre needs a model folded with raw_offset=-128")
        # integer pixels - 128 fit int8 exactly: scale 1, zero point 0, for every tensor a first conv reads so
        overrides = {t: [{"scale": np.array(1.0, np.float32), "zero_point": np.array(0, np.int8)}] for t in raw}
    else:
        raise UsageError(f"unknown INT8 strategy {strategy!r}")
    all_ops = sorted({n.op_type for n in model.graph.node})
    extra = {
        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "AddQDQPairToWeight": True,
        "DedicatedQDQPair": False, "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
        "ForceQuantizeNoInputCheck": True, "OpTypesToExcludeOutputQuantization": all_ops,
        "QDQDisableWeightAdjustForInt32Bias": True, "CalibPercentile": 99.99,
    }
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory(prefix="edgefold-int8-") as tmp, _quiet_quantizer():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        large = is_large(model)
        if large:  # the > 2 GB path: the quantiser reads and writes external data
            src = Path(str(model_bytes_or_path(model, tmp + "/")))
        else:
            onnx.save(model, str(src))
        quantize_static(str(src), str(dst), _Reader(feed, frames, show_progress), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True, reduce_range=False,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        calibrate_method=calib, extra_options=extra, use_external_data_format=large)
        out = onnx.load(str(dst))
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    out.metadata_props.add(key="edgefold.int8_strategy", value=strategy)
    return out
