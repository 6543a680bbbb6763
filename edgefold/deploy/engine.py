"""Step 4 of a build: the TensorRT target - which major to plan for, and the engine build through an
``EngineMaker``: what builds an engine from the prepared ONNX and loads it to run frames.

The makers live with the runtime that runs them (``edgefold.runtime.makers``): TensorRT's, and onnxruntime
standing in for an engine where there is no GPU. This layer only says what a maker does.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import onnx

from edgefold.backends import trt as trt_backend
from edgefold.deploy.spec import BuildOptions, EnginePlan
from edgefold.errors import MissingTensorRT, UsageError
from edgefold.graph.io import save_model


class Runner(Protocol):
    """A loaded engine: ``edgefold.runtime.Engine`` is one."""

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class EngineMaker(Protocol):
    trt_major: int  # the TensorRT major the engines are for

    def describe(self) -> str:
        """What an accuracy figure measured on its engines was measured on, e.g. ``engine (TensorRT 10.3.0, Orin)``."""
        ...

    def device_info(self) -> dict:
        """What the sidecar records about where the engine was built (TensorRT version, GPU)."""
        ...

    def build(self, plan: EnginePlan) -> bytes:
        """The serialized engine of the ONNX file at ``plan.onnx_path``."""
        ...

    def load(self, engine: bytes, sidecar: dict) -> Runner:
        """The engine, loaded to run frames as the sidecar's contract says."""
        ...


def tensorrt_target(options: BuildOptions, maker: EngineMaker | None) -> int:
    """The TensorRT major to plan for; a missing or different TensorRT is refused before any work."""
    if options.engine and maker is None:
        raise MissingTensorRT(f"{trt_backend.INSTALL_HINT}; or pass --no-engine to write the prepared model, "
                              f"sidecar and trtexec script only")
    if options.engine and maker is not None:
        if options.trt_major is not None and maker.trt_major != options.trt_major:
            raise UsageError(f"--trt-version {options.trt_major}, but TensorRT {maker.trt_major} is installed; drop "
                             f"the flag or use --no-engine")
        return maker.trt_major
    return options.trt_major or trt_backend.installed_major() or 10


def build_engine(maker: EngineMaker, plan: EnginePlan, model: onnx.ModelProto, workdir: str,
                 engine_path: str) -> tuple[bytes, float]:
    """(engine bytes, seconds the build took). TensorRT parses a file: the model is staged in ``workdir`` (a
    private folder, so a failed build leaves nothing behind)."""
    staged = str(Path(workdir) / Path(plan.onnx_path).name)
    save_model(model, staged)
    build_plan = dataclasses.replace(plan, onnx_path=staged, engine_path=str(Path(engine_path).resolve()))
    t0 = time.perf_counter()
    data = maker.build(build_plan)
    return data, time.perf_counter() - t0


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="edgefold-build-")
