"""NAME.json, the sidecar every reader (Engine, the C++ app, Triton, serve-check) takes the engine's contract
from: the source, the fold, the precision and how it was chosen, the accuracy measured, the build plan."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx

from edgefold.compare import detect_precision
from edgefold.compare.feeds import candidate_contract
from edgefold.core.contract import SIDECAR_VERSION, Meta, read_meta
from edgefold.deploy.candidate import Candidate, int8_share
from edgefold.deploy.engine import EngineMaker
from edgefold.deploy.prepare import Prepared
from edgefold.deploy.reuse import sha256
from edgefold.deploy.ship import Shipped
from edgefold.deploy.spec import BuildOptions, EnginePlan, kept_precision
from edgefold.precision.calib import CalibSet


def int8_summary(chosen: Candidate, calib: CalibSet, options: BuildOptions, plan: EnginePlan) -> dict:
    """What the INT8 model quantises: its share of the MACs, the layers kept in float (by first output tensor:
    node names are optional and may repeat), their precision as written, how they were found."""
    kept = list(chosen.search.kept_float) if chosen.search else []
    share = int8_share(chosen.model, calib)
    search = chosen.search
    half = written_in_half(chosen.model)
    precision = ("fp16" if half else "fp32") if plan.trt_major >= 11 else kept_precision(options).lower()
    return {"kept_float": kept, "layers_by": "first output tensor", "int8_mac_share": share,
            "kept_precision": precision,
            "kept_written_as": "float16 in the ONNX, as all of the unquantised rest (float16 Q/DQ scales)" if half else
            "float32 in the ONNX" + ("" if options.keep_fp32 or plan.trt_major >= 11 else
                                     ", run in FP16 by TensorRT's FP16 flag"),
            "search": None if search is None else {
                "steps": [list(step) for step in search.steps], "seconds": round(search.seconds, 1),
                "exhausted": search.exhausted,
                "sensitivity": [[n, v] for n, v in search.ranking[:20]]}}


def written_in_half(model: onnx.ModelProto) -> bool:
    """Whether a prepared model's float weights are written in float16 (FP16, or INT8 for TensorRT 11)."""
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)


def script_notes(sidecar: dict) -> str:
    """Comment lines for NAME.trtexec.sh: where the mixed precision is (the ONNX itself)."""
    int8 = sidecar.get("int8") or {}
    if not int8.get("kept_float"):
        return ""
    how = {"fp16": "FP16 on TensorRT 10 (the FP16 flag is set with INT8)", "fp32": "FP32 (--keep-fp32)"}[
        int8.get("kept_precision", "fp16")]
    if int8.get("kept_written_as", "").startswith("float16"):
        how = "FP16 (written in float16: TensorRT 11 is strongly typed)"
    return ("# Mixed precision is in the Q/DQ placement of the ONNX itself: these layers (by output tensor) have no\n"
            f"# Q/DQ and run in {how} - no --layerPrecisions needed:\n"
            + "".join(f"#   {name}\n" for name in int8["kept_float"]))


def sidecar(model_path: str, options: BuildOptions, chosen: Candidate, plan: EnginePlan, prep: Prepared,
            shipped: Shipped | None = None, maker: EngineMaker | None = None) -> dict:
    """The sidecar of ``chosen``; ``shipped``: what the engine measured (None: the engine is not built yet)."""
    from edgefold.version import __version__

    meta = read_meta(chosen.model)
    outputs = [{"name": o.name, "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)).name,
                "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                          for d in o.type.tensor_type.shape.dim]} for o in chosen.model.graph.output]
    fold_opts = options.fold_options
    return {
        "sidecar_version": SIDECAR_VERSION,
        "edgefold_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"path": str(model_path), "sha256": sha256(model_path)},
        "fold": {"folded_convs": json.loads(meta.get(Meta.FOLDED_CONVS, "[]")),
                 "raw_offset": json.loads(meta.get(Meta.RAW_OFFSET, "[0]")),
                 "channels": fold_opts.channels, "mean": fold_opts.mean, "std": fold_opts.std, "scale": fold_opts.scale},
        "precision": options.precision,
        "prepared_precision": detect_precision(chosen.model),
        "strategy": chosen.strategy,
        "calibration": {"source": options.calib, "frames": list(prep.calib.names),
                        "held_out": list(prep.held_out.names),
                        "method": chosen.calib_method if options.precision == "int8" else None,
                        "digest": prep.calib.digest()},
        "accuracy": _accuracy(options, chosen, prep, shipped),
        "engine": _engine(options, shipped, maker),
        "float32_ops": _typed(chosen.model, "float32_ops") if plan.strongly_typed else None,
        "precisions": _typed(chosen.model, "census") if plan.strongly_typed else None,
        "int8": int8_summary(chosen, prep.calib, options, plan) if options.precision == "int8" else None,
        # the full contract also for --no-fold (the model's own input as it is): Engine and the C++ app read it
        "input_contract": candidate_contract(chosen.model, model_path).to_json(),
        "source_inputs": json.loads(meta.get(Meta.SOURCE_INPUTS, "[]")),
        "frontend": json.loads(meta[Meta.FRONTEND]) if Meta.FRONTEND in meta else None,
        "outputs": outputs,
        "build_plan": plan.to_json(),
        "trtexec": Path(options.stem).name + ".trtexec.sh",
    }


def _accuracy(options: BuildOptions, chosen: Candidate, prep: Prepared, shipped: Shipped | None) -> dict:
    """The verdict and its figures. ``measured_on`` says what the held-out figures of the verdict come from: the
    engine itself where one was built here, else onnxruntime's run of the prepared ONNX."""
    on_engine = shipped.on_engine if shipped is not None and shipped.engine is not None else None
    passed = shipped.passed if shipped is not None else chosen.passed
    out = {"reference": "fp32 folded model in onnxruntime", "floor": prep.tol.describe(),
           "measured_on": shipped.measured_on if shipped is not None else None,
           "passed": passed, "accepted_drop": bool(options.accept_accuracy_drop and not passed),
           "calibration": [s.to_json() for s in chosen.on_calibration],
           "held_out": [s.to_json() for s in (on_engine if on_engine is not None else chosen.on_held_out)]}
    if on_engine is not None:  # the simulation's own figures on the same frames, beside the engine's
        out["simulation_held_out"] = [s.to_json() for s in chosen.on_held_out]
        out["calibration_measured_on"] = "onnxruntime (the calibration frames are not run on the engine)"
    return out


def _engine(options: BuildOptions, shipped: Shipped | None, maker: EngineMaker | None) -> dict:
    if shipped is None or shipped.engine is None or maker is None:
        return {"built": False}
    return {"built": True, "build_seconds": round(shipped.builds[-1].seconds, 1) if shipped.builds else None,
            "builds": [b.to_json() for b in shipped.builds], "dla_core": options.dla_core, **maker.device_info()}


def _typed(model: onnx.ModelProto, what: str) -> dict | None:
    """Strongly typed TensorRT runs each node in the type the ONNX gives it: ``float32_ops`` (op -> nodes left in
    float32) or ``census`` (INT8 layers, FP16 nodes, FP32 nodes by reason)."""
    from edgefold.precision import fp16

    try:
        return getattr(fp16, what)(model)
    except Exception:  # noqa: BLE001 - information only; a model shape inference cannot type still builds
        return None
