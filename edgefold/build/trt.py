"""The only module that imports ``tensorrt``; everything else in edgefold imports without it.

Every TensorRT call here is type-checked against the TensorRT 10.13 stubs in CI (``./run test``).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from edgefold.errors import MissingTensorRT, UsageError

INSTALL_HINT = ("TensorRT is not installed: on a Jetson, `sudo apt-get install nvidia-jetpack` and a venv with "
                "--system-site-packages (jetson/README.md); on a desktop, `pip install edgefold[tensorrt]` from "
                "NVIDIA's index")


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except Exception as err:  # noqa: BLE001 - the PyPI stub raises at import when its libs are missing
        raise MissingTensorRT(f"{INSTALL_HINT} ({type(err).__name__})") from None
    return tensorrt


def engine_layers(path: str | Path) -> dict:
    """The engine's layers as TensorRT's engine inspector reports them (JSON format)."""
    import_tensorrt()  # a one-line error when it is missing
    import tensorrt as trt  # typed by the TensorRT stubs in CI

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: no such engine file")
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(p.read_bytes())
    if engine is None:
        raise UsageError(f"{p}: TensorRT {trt.__version__} cannot load this engine (built for another TensorRT "
                         f"version or GPU?); rebuild it on this device")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(info)


def trt_runner(path: str | Path, name: str):
    """Polygraphy's TensorRT runner over a serialized engine (needs TensorRT and a GPU)."""
    import_tensorrt()
    from polygraphy.backend.trt import EngineFromPath, TrtRunner

    return TrtRunner(EngineFromPath(str(path)), name=name)
