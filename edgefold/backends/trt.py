"""TensorRT where edgefold loads and runs engines: the import with its one-line error, Polygraphy's runner,
the engine inspector and the device. ``deploy/trt.py`` (building engines) and ``runtime/trt_backend.py``
(running them from Python) are the other two modules that touch TensorRT; every call is type-checked against
the TensorRT stubs in CI (``./run test``).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from edgefold.errors import EngineMismatch, MissingTensorRT, UsageError

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
    p = Path(path)
    if not p.is_file():  # before TensorRT: a missing file is the same usage error on every machine
        raise UsageError(f"{p}: no such file")
    import_tensorrt()  # a one-line error when it is missing
    import tensorrt as trt  # typed by the TensorRT stubs in CI
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(p.read_bytes())
    if engine is None:
        raise EngineMismatch(f"{p}: TensorRT {trt.__version__} cannot load this engine (built for another TensorRT "
                         f"version or GPU?); rebuild it on this device")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(info)


def trt_runner(path: str | Path, name: str):
    """Polygraphy's TensorRT runner over a serialized engine (needs TensorRT and a GPU)."""
    import_tensorrt()
    from polygraphy.backend.trt import EngineFromPath, TrtRunner

    return TrtRunner(EngineFromPath(str(path)), name=name)


def installed_major() -> int | None:
    """The installed TensorRT major version, or None where ``import tensorrt`` fails."""
    try:
        import_tensorrt()
    except MissingTensorRT:
        return None
    import tensorrt as trt

    return int(trt.__version__.split(".")[0])


def device_info() -> dict:
    """TensorRT version and the GPU the engine is built on (name, compute capability), where known."""
    import tensorrt as trt

    info: dict = {"tensorrt": trt.__version__}
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 layout

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            info.update(gpu=name.rstrip("\x00"), compute_capability=f"{props.major}.{props.minor}")
    except Exception:  # noqa: BLE001 - the GPU name is informative only
        pass
    return info
