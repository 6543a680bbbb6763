"""Triton Inference Server: a model repository entry for a built engine, and the offline check of a repository.

``REPO/NAME/config.pbtxt`` is written with Triton's own protobuf schema (``tritonclient``'s ``model_config_pb2``
and ``google.protobuf.text_format``, the ``triton`` extra), never as hand-built text; ``REPO/NAME/1/model.plan``
is the engine (``tensorrt_plan``) and ``REPO/NAME/edgefold.json`` the build's sidecar, which ``serve-check``
compares the configuration with. ``--triton-onnx`` adds ``REPO/NAME_onnx`` (``onnxruntime_onnx``, the folded
fp32 model) for CPU nodes.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from edgefold.core.contract import InputContract, Sidecar
from edgefold.errors import UsageError, VerificationFailed

SIDECAR = "edgefold.json"
DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "int8": "TYPE_INT8",
          "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16",
          "float32": "TYPE_FP32", "float64": "TYPE_FP64"}
MODEL_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}


def schema() -> ModuleType:
    """Triton's ``model_config_pb2``. ``tritonclient.grpc``'s package init insists on grpcio, which the schema
    does not need, so without grpcio the generated module is loaded from its file (it needs only protobuf)."""
    try:
        return importlib.import_module("tritonclient.grpc.model_config_pb2")
    except ImportError:
        pass
    except RuntimeError:  # "The installation does not include grpc support"
        pass
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or spec.origin is None:
        raise UsageError("Triton configs need Triton's config schema: pip install 'edgefold[triton]' (tritonclient)")
    path = os.path.join(os.path.dirname(spec.origin), "grpc", "model_config_pb2.py")
    loader_spec = importlib.util.spec_from_file_location("edgefold_triton_model_config_pb2", path)
    if loader_spec is None or loader_spec.loader is None:
        raise UsageError(f"tritonclient has no model_config_pb2 at {path}; reinstall 'edgefold[triton]'")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def _dims(shape: list, batched: bool) -> list[int]:
    dims = [int(d) if isinstance(d, int) else -1 for d in shape]
    return dims[1:] if batched else dims


def _max_batch(info: Sidecar) -> int:
    """0 (no batching: dims carry the batch) for a fixed batch, else the profile's largest batch."""
    if isinstance(info.contract.shape[0], int):
        return 0
    return info.max_batch or 1


def model_config(sidecar: dict, name: str, platform: str = "tensorrt_plan", instances: int = 1):  # noqa: ANN201
    """The ``ModelConfig`` message for one built model."""
    mc = schema()
    info = Sidecar.from_json(sidecar)
    contract = info.contract
    max_batch = _max_batch(info)
    config = mc.ModelConfig(name=name, platform=platform, max_batch_size=max_batch)
    tensor = config.input.add()
    tensor.name = contract.name
    tensor.data_type = mc.DataType.Value(_dtype(contract.dtype, contract.name))
    tensor.dims.extend(_dims(list(contract.shape), max_batch > 0))
    for out in info.outputs:
        o = config.output.add()
        o.name = out["name"]
        o.data_type = mc.DataType.Value(_dtype(out["dtype"], out["name"]))
        o.dims.extend(_dims(list(out["shape"]), max_batch > 0))
    if max_batch > 0:
        config.dynamic_batching.SetInParent()
    group = config.instance_group.add()
    group.count = instances
    group.kind = mc.ModelInstanceGroup.KIND_GPU if platform == "tensorrt_plan" else mc.ModelInstanceGroup.KIND_CPU
    return config


def config_text(config) -> str:  # noqa: ANN001 - a ModelConfig
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _dtype(dtype: str, name: str) -> str:
    if dtype not in DTYPES:
        raise UsageError(f"tensor '{name}' is {dtype}, which Triton has no type for")
    return DTYPES[dtype]


# ---- serve-check ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Checked:
    name: str
    platform: str
    inputs: str
    max_batch_size: int
    model_file: bool


def check_repository(repo: str | Path) -> list[Checked]:
    """Parse every ``config.pbtxt`` of a repository through Triton's schema and check it against the model's
    sidecar. A malformed file or a missing sidecar is a UsageError; a disagreement is VerificationFailed."""
    root = Path(repo)
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise UsageError(f"{root}: not a model repository folder")
    models = sorted(p for p in root.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    if not models:
        raise UsageError(f"{root}: no model folder with a config.pbtxt (REPO/NAME/config.pbtxt)")
    return [_check_model(m) for m in models]


def _check_model(folder: Path) -> Checked:
    import json

    from google.protobuf import text_format

    mc = schema()
    path = folder / "config.pbtxt"
    try:
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not a Triton model config ({str(err).splitlines()[0]})") from None
    side_path = folder / SIDECAR
    if not side_path.is_file():
        raise UsageError(f"{folder}: no {SIDECAR}; repositories are checked against the sidecar edgefold build "
                         f"writes (edgefold build --triton REPO)")
    try:
        sidecar = json.loads(side_path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{side_path}: not valid JSON ({err})") from None
    expected = model_config(sidecar, folder.name, config.platform or "tensorrt_plan",
                            config.instance_group[0].count if config.instance_group else 1)

    def fail(what: str) -> VerificationFailed:
        return VerificationFailed(f"{path}: {what}")

    if config.name and config.name != folder.name:
        raise fail(f"name '{config.name}' is not the folder's name '{folder.name}' (Triton requires them equal)")
    if config.platform not in MODEL_FILES:
        raise fail(f"platform '{config.platform}' is neither tensorrt_plan nor onnxruntime_onnx")
    if config.max_batch_size != expected.max_batch_size:
        raise fail(f"max_batch_size {config.max_batch_size}, the engine's profile gives {expected.max_batch_size}")
    for kind, got, want in (("input", config.input, expected.input), ("output", config.output, expected.output)):
        got_by_name = {t.name: t for t in got}
        for w in want:
            g = got_by_name.get(w.name)
            if g is None:
                raise fail(f"no {kind} '{w.name}' (the engine's {kind}s: {', '.join(t.name for t in want)})")
            if g.data_type != w.data_type:
                raise fail(f"{kind} '{w.name}' is {mc.DataType.Name(g.data_type)}, the engine's is "
                           f"{mc.DataType.Name(w.data_type)}")
            if list(g.dims) != list(w.dims):
                raise fail(f"{kind} '{w.name}' has dims {list(g.dims)}, the engine's are {list(w.dims)}"
                           + (" (with max_batch_size > 0 the dims leave out the batch)" if config.max_batch_size else ""))
        extra = set(got_by_name) - {w.name for w in want}
        if extra:
            raise fail(f"{kind} '{sorted(extra)[0]}' is not one of the engine's")
    model_file = (folder / "1" / MODEL_FILES[config.platform]).is_file()
    contract = InputContract.from_json(sidecar["input_contract"])
    return Checked(folder.name, config.platform, f"{contract.name} {contract.dtype} {list(contract.shape)}",
                   config.max_batch_size, model_file)
