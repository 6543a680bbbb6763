"""What edgefold's engine build asks of TensorRT, run against one version's real Python bindings.

Started by tests/test_trt_api.py in a subprocess whose ``import tensorrt`` loads NVIDIA's own bindings
(tensorrt-cu12-bindings 10.3 or 11.4, over the stand-in native libraries of .ci/trt_api.py). The enums
(``BuilderFlag``, ``DeviceType``, ``MemoryPoolType`` ...) and the classes are TensorRT's. Instances of
Builder, INetworkDefinition and IBuilderConfig need the native library, so each is an ``ApiSurface``: it has
exactly the attributes and properties the real class has (anything else raises AttributeError, which
Polygraphy reports as "not available on TensorRT version ..."), records what was used, and builds nothing.

For each plan given as JSON on stdin ({case: BuildOptions kwargs}), it runs the Polygraphy config loader
edgefold builds (``deploy.trt.loaders``: CreateConfig + the late settings) and prints, per case, the error
or the TensorRT names that were used.
"""
from __future__ import annotations

import json
import re
import sys

import tensorrt as trt

from edgefold.deploy import trt as trt_layer
from edgefold.deploy.spec import BuildOptions, ShapeProfile, plan_engine

RETURNS = re.compile(r"->\s*([\w.]+)")


class ApiSurface:
    """The attribute surface of a real TensorRT class; values for a few properties and methods given."""

    def __init__(self, cls: type, used: set[str], **values: object) -> None:
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_used", used)
        object.__setattr__(self, "_values", values)

    def _check(self, name: str) -> object:
        cls: type = object.__getattribute__(self, "_cls")
        if not hasattr(cls, name):
            raise AttributeError(f"TensorRT {trt.__version__} {cls.__name__} has no attribute {name!r}")
        object.__getattribute__(self, "_used").add(f"{cls.__name__}.{name}")
        return getattr(cls, name)

    def __getattr__(self, name: str) -> object:
        member = self._check(name)
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        if isinstance(member, property):
            return None
        returned = RETURNS.search((member.__doc__ or "").split("\n", 1)[0])
        kind = returned.group(1).rsplit(".", 1)[-1] if returned else "None"
        used = object.__getattribute__(self, "_used")
        result = {"bool": True, "int": 0, "str": "", "None": None}.get(kind)
        if kind not in ("bool", "int", "str", "None") and isinstance(getattr(trt, kind, None), type):
            result = ApiSurface(getattr(trt, kind), used)
        return lambda *args, **kwargs: result

    def __setattr__(self, name: str, value: object) -> None:
        if not isinstance(self._check(name), property):
            raise AttributeError(f"TensorRT {trt.__version__} {self._cls.__name__}.{name} is not a property")

    def __iter__(self):  # noqa: ANN204 - a network's layers: none
        return iter(())


def network(profiles: tuple[ShapeProfile, ...], used: set[str]) -> ApiSurface:
    inputs = [ApiSurface(trt.ITensor, used, name=p.name, is_shape_tensor=False, shape=p.opt, dtype=trt.float32)
              for p in profiles]
    return ApiSurface(trt.INetworkDefinition, used, num_inputs=len(inputs), get_input=inputs.__getitem__,
                      has_implicit_batch_dimension=False)


def parse(loader, net: ApiSurface, used: set[str]) -> tuple:  # noqa: ANN001
    """Polygraphy's ONNX network loader with TensorRT's Builder and OnnxParser constructors (which need the
    native library) standing in as surfaces: the network creation and parser flags are checked for real."""
    real = trt.Builder, trt.OnnxParser
    builder = ApiSurface(trt.Builder, used, create_network=lambda *args, **kwargs: net)
    parser = ApiSurface(trt.OnnxParser, used, num_errors=0)
    trt.Builder, trt.OnnxParser = (lambda *args: builder), (lambda *args: parser)  # type: ignore[assignment,misc]
    try:
        return loader.call_impl()
    finally:
        trt.Builder, trt.OnnxParser = real  # type: ignore[misc]


def requested(kwargs: dict) -> dict:
    kwargs = dict(kwargs)
    kwargs["shapes"] = tuple(ShapeProfile.parse(s) for s in kwargs.get("shapes", ()))
    major = kwargs.pop("trt_major")
    force = kwargs.pop("force", {})  # plan fields overridden (the negative controls of the test)
    options = BuildOptions(output="m.engine", **kwargs)
    plan = plan_engine(options, "m.onnx", "m.engine", major)
    plan = type(plan)(**{**plan.__dict__, **force})
    used: set[str] = set()
    network_loader, config, _ = trt_layer.loaders(plan)
    try:
        builder, _, _ = parse(network_loader, network(plan.profiles, used), used)
        config.call_impl(builder, network(plan.profiles, used))
    except Exception as err:  # noqa: BLE001 - Polygraphy's PolygraphyException or TensorRT's AttributeError
        return {"error": str(err).strip().splitlines()[-1][:300]}
    return {"used": sorted(used)}


def main() -> None:
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # the verdict is the result, not Polygraphy's log
    cases, out = json.load(sys.stdin), sys.stdout
    sys.stdout = sys.stderr  # Polygraphy logs to stdout; the verdict alone goes there
    verdict = {"tensorrt": trt.__version__, "cases": {k: requested(v) for k, v in cases.items()}}
    out.write(json.dumps(verdict) + "\n")


if __name__ == "__main__":
    main()
