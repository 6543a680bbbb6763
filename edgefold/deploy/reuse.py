"""The calibration cache: a rebuild with the same source, options and frames takes the previous build's
prepared model (measured again) instead of calibrating and searching again."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import onnx

from edgefold.deploy.candidate import Candidate
from edgefold.deploy.spec import BuildOptions
from edgefold.errors import UsageError
from edgefold.graph.io import load_model
from edgefold.precision.calib import CalibSet
from edgefold.precision.mixed import SearchResult

# what a build writes for the same options; a new one makes earlier caches miss. 2: layers known by first output
# tensor in the sidecar (they were node names, which may be empty or repeat), INT8's rest in float16 for TensorRT 11
PREPARED_FORMAT = 2


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key(model_path: str, options: BuildOptions, calib: CalibSet) -> str:
    """What the prepared model depends on: the source, the preparation options (the floor and the search
    decide which layers stay in FP16), the frames, and PREPARED_FORMAT (a sidecar of an earlier format - one that
    lists kept layers by node name - is not reused: the build calibrates again)."""
    relevant = {k: getattr(options, k) for k in ("precision", "calib_method", "int8_strategy", "fold", "fp16_flag",
                                                 "accuracy_floor", "mixed_precision", "search_budget_s", "keep_fp32",
                                                 "trt_major",
                                                 "pixel_format", "yuv", "deepstream")}  # these change its input
    relevant["fold_options"] = repr(options.fold_options)
    relevant["shapes"] = repr(options.shapes)
    relevant["format"] = PREPARED_FORMAT
    blob = json.dumps([sha256(model_path), relevant, calib.digest()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_prepared(options: BuildOptions, key: str) -> onnx.ModelProto | None:
    """The prepared model of an earlier build with the same key: a rebuild does not recalibrate."""
    sidecar, prepared = Path(f"{options.stem}.json"), Path(f"{options.stem}.prepared.onnx")
    if not (sidecar.is_file() and prepared.is_file()):
        return None
    try:
        if json.loads(sidecar.read_text()).get("cache_key") != key:
            return None
        # a prepared file a crash or a full disk cut short is no cache: calibrate again (it was
        # 'NAME.prepared.onnx: not an ONNX model; export the network to .onnx first', exit 2)
        return load_model(prepared)
    except (json.JSONDecodeError, OSError, UsageError):
        return None


def reused(options: BuildOptions, evaluate: Callable[[str, onnx.ModelProto], Candidate],
           model: onnx.ModelProto) -> Candidate:
    """The previous build's prepared model, measured again, with what its sidecar says about how it was made."""
    previous = json.loads(Path(f"{options.stem}.json").read_text())
    int8 = previous.get("int8") or {}
    search = int8.get("search") or {}
    found = None if not int8.get("kept_float") else SearchResult(
        tuple(int8["kept_float"]), tuple((n, float(v)) for n, v in search.get("sensitivity", [])),
        tuple((int(k), bool(ok)) for k, ok in search.get("steps", [])), float(search.get("seconds", 0.0)),
        bool(search.get("exhausted", False)))
    return dataclasses.replace(evaluate(previous["strategy"], model), search=found,
                               calib_method=(previous.get("calibration") or {}).get("method"))
