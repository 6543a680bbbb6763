"""Engine makers for ``edgefold build``: what turns the prepared ONNX into an engine, and loads that engine in
edgefold's runtime (``Engine``) so the build measures the engine that ships.

``TensorRTMaker`` builds with TensorRT through Polygraphy and runs the engine on the GPU. ``OnnxRuntimeMaker``
stands in for it on machines without one: its "engine" is the prepared ONNX model itself, run by onnxruntime
through the same ``Engine`` API - what the tests of the engine-in-the-loop search use. Neither pretends: each
runs what it built.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from edgefold.core.jsonable import plain
from edgefold.deploy.spec import EnginePlan
from edgefold.runtime.engine import Engine


class _Loaded(Engine):
    """An Engine over a file in a private folder, removed when the engine is closed."""

    def __init__(self, name: str, data: bytes, sidecar: dict | None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="edgefold-engine-")
        path = Path(self._dir.name) / name
        path.write_bytes(data)
        if sidecar is not None:
            path.with_suffix(".json").write_text(json.dumps(sidecar, default=plain))
        super().__init__(path)

    def close(self) -> None:
        super().close()
        self._dir.cleanup()


class OnnxRuntimeMaker:
    """onnxruntime standing in for TensorRT: the engine is the prepared ONNX, run on the CPU."""

    def __init__(self, trt_major: int = 10) -> None:
        self.trt_major = trt_major

    def describe(self) -> str:
        return "onnxruntime standing in for the engine (CPU)"

    def device_info(self) -> dict:
        return {"runtime": "onnxruntime (stand-in, no TensorRT)"}

    def build(self, plan: EnginePlan) -> bytes:
        return Path(plan.onnx_path).read_bytes()

    def load(self, engine: bytes, sidecar: dict) -> Engine:
        return _Loaded("engine.onnx", engine, None)


class TensorRTMaker:
    """TensorRT: the engine Polygraphy builds from the plan, run by ``Engine``'s TensorRT backend."""

    def __init__(self) -> None:
        from edgefold.backends import trt as trt_backend

        trt_backend.import_tensorrt()  # a one-line error where it is missing
        info = trt_backend.device_info()
        self.info = info
        self.trt_major = int(str(info["tensorrt"]).split(".")[0])

    def describe(self) -> str:
        device = self.info.get("gpu") or "GPU"
        return f"engine (TensorRT {self.info['tensorrt']}, {device})"

    def device_info(self) -> dict:
        return dict(self.info)

    def build(self, plan: EnginePlan) -> bytes:
        from edgefold.deploy.trt import build_engine

        return build_engine(plan)

    def load(self, engine: bytes, sidecar: dict) -> Engine:
        return _Loaded("engine.engine", engine, {**sidecar, "engine": {"built": True, **self.info}})


def installed_maker() -> TensorRTMaker | None:
    """TensorRT's maker where TensorRT imports, else None (a build then needs --no-engine)."""
    from edgefold.backends import trt as trt_backend

    return TensorRTMaker() if trt_backend.installed_major() is not None else None
