"""Step 2 of a build: each precision's candidate models, made on the CPU and measured against the fp32 fold.

A new precision is a function of (Prepared, BuildOptions, half) returning its candidates, and a line in
STRATEGIES; ``half``: the target is strongly typed (TensorRT 11) and the unquantised rest of an INT8 model is
written in float16, as ModelOpt's ``high_precision_dtype="fp16"`` does (not with --keep-fp32).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import onnx

from edgefold.compare.tolerance import tolerance_for
from edgefold.core.frames import InputFeed
from edgefold.deploy.candidate import Candidate, int8_share
from edgefold.deploy.prepare import Prepared, fold_for_build
from edgefold.deploy.spec import BuildOptions
from edgefold.errors import UnsupportedGraph, VerificationFailed
from edgefold.graph.index import opset_of
from edgefold.precision import accuracy

MIN_QDQ_OPSET = 13  # per-channel QuantizeLinear
AUTO_CALIB_METHODS = ("percentile", "minmax")  # --calib-method auto: both measured, the better one kept


def _fp32(prep: Prepared, options: BuildOptions, half: bool) -> list[Candidate]:
    return [prep.evaluate("fp32", prep.fp32)]


def _fp16_flag(prep: Prepared, options: BuildOptions, half: bool) -> list[Candidate]:
    """TensorRT <= 10: the fp32 ONNX and the FP16 builder flag (measured as fp32 here)."""
    return [prep.evaluate("fp16-flag", prep.fp32)]


def _fp16(prep: Prepared, options: BuildOptions, half: bool) -> list[Candidate]:
    from edgefold.precision.fp16 import to_fp16

    model16, _ = to_fp16(prep.fp32, prep.feed, list(prep.calib.frames) + list(prep.held_out.frames))
    return [prep.evaluate("fp16", model16)]


def _int8(prep: Prepared, options: BuildOptions, half: bool) -> list[Candidate]:
    """Every first-conv strategy x calibrator asked for, each quantised (``half``: the rest in float16) and
    measured - the model measured is the model written."""
    from edgefold.precision.fp16 import HALF_QDQ_OPSET, to_fp16
    from edgefold.precision.int8 import quantize

    strategies = [options.int8_strategy] if options.int8_strategy != "auto" else ["recentre", "float-first"]
    if not prep.folded_here:
        strategies = [s for s in strategies if s != "recentre"] or ["float-first"]
    methods = AUTO_CALIB_METHODS if options.calib_method == "auto" else (options.calib_method,)
    out = []
    for strategy in strategies:
        if strategy == "recentre":
            try:
                base, _ = fold_for_build(prep.original, options, -128.0)
            except UnsupportedGraph:
                if options.int8_strategy == "recentre":
                    raise
                continue  # e.g. a composed adapter: no re-centred fold; float-first is measured alone
        else:
            base = prep.fp32
        base = upgrade_opset(base, prep.feed, list(prep.calib.frames))
        in_half = half
        if half:  # float16 Q/DQ scales need opset 19; a model that cannot be upgraded keeps its rest in float32
            try:
                base = upgrade_opset(base, prep.feed, list(prep.calib.frames), HALF_QDQ_OPSET)
            except (UnsupportedGraph, VerificationFailed):
                in_half = False
        for method in methods:
            q = quantize(base, prep.feed, list(prep.calib.frames), strategy, method, options.show_progress)
            if in_half:
                q, _ = to_fp16(q, prep.feed, list(prep.calib.frames) + list(prep.held_out.frames))
            out.append(dataclasses.replace(prep.evaluate(strategy, q), calib_method=method,
                                           int8_share=int8_share(q, prep.calib)))
    return out


STRATEGIES: dict[str, Callable[[Prepared, BuildOptions, bool], list[Candidate]]] = {
    "fp32": _fp32, "fp16-flag": _fp16_flag, "fp16": _fp16, "int8": _int8,
}


def candidates(prep: Prepared, options: BuildOptions, half: bool = False) -> list[Candidate]:
    name = "fp16-flag" if options.precision == "fp16" and options.fp16_flag else options.precision
    return STRATEGIES[name](prep, options, half)


def upgrade_opset(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray], opset: int = MIN_QDQ_OPSET
                  ) -> onnx.ModelProto:
    """Per-channel Q/DQ needs opset 13 (float16 scales 19): convert, and prove the converted model equal in
    onnxruntime."""
    if opset_of(model) >= opset:
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, opset)
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise UnsupportedGraph(f"cannot upgrade opset {opset_of(model)} to {opset} for Q/DQ: "
                               f"{str(err).splitlines()[0][:200]}") from None
    upgraded.metadata_props.extend([p for p in model.metadata_props if p.key not in
                                    {q.key for q in upgraded.metadata_props}])
    stats = accuracy.measure(model, upgraded, feed, frames[:3], tolerance_for("fp32", {}, {}))
    if not all(s.passed for s in stats):
        raise VerificationFailed(f"opset {opset_of(model)} -> {opset} conversion changed the outputs "
                                 f"(max rel error {max(s.max_rel for s in stats):.3g}); nothing written")
    return upgraded
