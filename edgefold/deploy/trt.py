"""Building a TensorRT engine from an ``EnginePlan`` through Polygraphy's loaders (the TensorRT target).

Every TensorRT call here is type-checked against the TensorRT stubs in CI (``./run test``).
"""
from __future__ import annotations

from edgefold.backends.trt import import_tensorrt
from edgefold.deploy.spec import EnginePlan
from edgefold.errors import MissingTensorRT


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
