"""Loading untrusted ONNX files and writing results atomically.

Models are untrusted input: external-data locations must stay inside the model's folder, and nothing in a
model is executed. Writes go to a temporary file in the destination folder and are renamed into place, so
a failure never leaves a partial file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from edgefold.errors import UsageError

# protobuf cannot serialise a message over 2 GiB; keep a margin for the graph structure itself
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    out = []
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in tensor.external_data}
            out.append((tensor.name, info.get("location", "")))
    return out


def _all_tensors(model: onnx.ModelProto):
    def walk(graph: onnx.GraphProto):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from walk(g)
    yield from walk(model.graph)


def check_external_data(model: onnx.ModelProto, base_dir: Path, source: Path) -> None:
    base = base_dir.resolve()
    for tensor_name, location in external_locations(model):
        loc = Path(location)
        target = (base / loc).resolve()
        if not location or loc.is_absolute() or ".." in loc.parts or base not in target.parents:
            raise UsageError(f"{source}: tensor '{tensor_name}' keeps its data at '{location}', outside the "
                             f"model's folder; move the data file next to the model")
        if not target.is_file():
            raise UsageError(f"{source}: external data file '{location}' of tensor '{tensor_name}' is "
                             f"missing; copy it next to the model")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if not p.is_file():
        raise UsageError(f"{p}: not a file")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise UsageError(f"{p}: not an ONNX model ({type(err).__name__}); export the network to .onnx "
                         f"first") from None
    if not model.HasField("graph") or not model.graph.node:
        raise UsageError(f"{p}: not an ONNX model with a graph (no nodes found)")
    check_external_data(model, p.parent, p)
    if external_locations(model):
        onnx.load_external_data_for_model(model, str(p.parent))
    check_wellformed(model, str(p))
    return model


def check_wellformed(model: onnx.ModelProto, label: str) -> None:
    """The ONNX checker (structure, types, attributes), so a malformed file fails here with one line."""
    try:
        if model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UsageError(f"{label}: not a valid ONNX model ({first}); re-export it") from None


def model_bytes_or_path(model: onnx.ModelProto, tmp_dir: str) -> str | bytes:
    """What onnxruntime can load: bytes for ordinary models, a file with external data for huge ones."""
    if model.ByteSize() < EXTERNAL_DATA_THRESHOLD:
        return model.SerializeToString()
    path = Path(tmp_dir) / "model.onnx"
    onnx.save_model(copy_model(model), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)
    return str(path)


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx's external-data saving moves tensor data out of the proto it is given; save a copy instead, so
    the caller's model still holds its weights afterwards."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, source: str | os.PathLike | None = None) -> None:
    """Write atomically; models too large for one protobuf get a ``NAME.data`` file beside them."""
    out = Path(path)
    if source is not None and out.exists() and out.resolve() == Path(source).resolve():
        raise UsageError(f"{out}: refusing to overwrite the input model; choose another -o path")
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: output folder does not exist")
    external = model.ByteSize() >= EXTERNAL_DATA_THRESHOLD
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".edgefold-") as tmp:
        tmp_model = Path(tmp) / out.name
        data_name = out.name + ".data"
        if external:
            onnx.save_model(copy_model(model), str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            if (Path(tmp) / data_name).exists():  # absent when every tensor is small enough to stay inline
                os.replace(Path(tmp) / data_name, out.parent / data_name)
        else:
            onnx.save_model(model, str(tmp_model))
        os.replace(tmp_model, out)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    out = Path(path)
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: output folder does not exist")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".edgefold-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
