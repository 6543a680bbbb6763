"""The only module that imports ``tensorrt``; everything else in edgefold imports without it.

Every TensorRT call here is type-checked against the TensorRT 10.13 stubs in CI (``./run test``).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from edgefold.build.spec import EnginePlan
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


def installed_major() -> int | None:
    """The installed TensorRT major version, or None where ``import tensorrt`` fails."""
    try:
        import_tensorrt()
    except MissingTensorRT:
        return None
    import tensorrt as trt

    return int(trt.__version__.split(".")[0])


def loaders(plan: EnginePlan):
    """Polygraphy's lazy loaders for a plan: constructing them needs no TensorRT, calling them builds.

    Returns (network, config, engine_bytes) so a test can inspect each one's arguments."""
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        PostprocessConfig,
        Profile,
    )

    network = NetworkFromOnnxPath(plan.onnx_path, strongly_typed=True if plan.strongly_typed else None)
    profiles = [Profile().add(p.name, min=p.min, opt=p.opt, max=p.max) for p in plan.profiles]
    config = CreateConfig(
        fp16=True if plan.fp16_flag else None,
        int8=True if plan.int8_flag else None,
        profiles=profiles or None,
        load_timing_cache=plan.timing_cache,
        builder_optimization_level=plan.opt_level,
        use_dla=True if plan.dla_core is not None else None,
        allow_gpu_fallback=True if plan.gpu_fallback else None,
        version_compatible=True if plan.version_compatible else None,
    )
    config = PostprocessConfig(config, _late_settings(plan))
    engine_bytes = EngineBytesFromNetwork(network, config=config, save_timing_cache=plan.timing_cache)
    return network, config, engine_bytes


def _late_settings(plan: EnginePlan):
    """Settings that need TensorRT's enums, applied when the builder config exists. Polygraphy hard-codes
    DLA core 0 with use_dla; the requested core is set here."""

    def apply(builder, network, config) -> None:  # noqa: ANN001 - Polygraphy's callback signature
        import tensorrt as trt

        cfg: trt.IBuilderConfig = config
        if plan.dla_core is not None:
            cfg.DLA_core = plan.dla_core
        if plan.workspace_mib:
            cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
        if plan.hardware_compat == "ampere+":
            cfg.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS

    return apply


def build_engine(plan: EnginePlan) -> bytes:
    """Build the serialized engine (needs TensorRT and a GPU); a failed build is exit 4."""
    import_tensorrt()
    _, _, engine_bytes = loaders(plan)
    try:
        data = engine_bytes()
    except Exception as err:  # noqa: BLE001 - Polygraphy raises its own PolygraphyException on build errors
        raise MissingTensorRT(f"TensorRT could not build {plan.onnx_path}: {str(err).splitlines()[0][:300]}") from None
    return bytes(data)


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
