"""Step 4 of a build: the TensorRT target - which major to plan for, and the engine build itself."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import onnx

from edgefold.backends import trt as trt_backend
from edgefold.deploy import trt as trt_layer
from edgefold.deploy.spec import BuildOptions, EnginePlan
from edgefold.errors import MissingTensorRT, UsageError
from edgefold.graph.io import save_model


def tensorrt_target(options: BuildOptions) -> int:
    """The TensorRT major to plan for; a missing or different TensorRT is refused before any work."""
    installed = trt_backend.installed_major()
    if options.engine and installed is None:
        raise MissingTensorRT(f"{trt_backend.INSTALL_HINT}; or pass --no-engine to write the prepared model, "
                              f"sidecar and trtexec script only")
    if options.engine and options.trt_major is not None and installed != options.trt_major:
        raise UsageError(f"--trt-version {options.trt_major}, but TensorRT {installed} is installed; drop the flag "
                         f"or use --no-engine")
    return options.trt_major or installed or 10


def build_engine(options: BuildOptions, plan: EnginePlan, model: onnx.ModelProto) -> tuple[bytes | None, dict]:
    """The TensorRT build (only with TensorRT): engine bytes and what the sidecar records about it."""
    if not options.engine:
        return None, {"built": False}
    # TensorRT parses a file; build from a private copy so a failed build leaves nothing behind
    with tempfile.TemporaryDirectory(prefix="edgefold-build-") as tmp:
        staged = str(Path(tmp) / plan.onnx_path)
        save_model(model, staged)
        build_plan = dataclasses.replace(plan, onnx_path=staged, engine_path=str(Path(options.output).resolve()))
        t0 = time.perf_counter()
        engine_bytes = trt_layer.build_engine(build_plan)
    return engine_bytes, {"built": True, "build_seconds": round(time.perf_counter() - t0, 1),
                          "dla_core": options.dla_core, **trt_backend.device_info()}
