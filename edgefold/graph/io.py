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


def is_large(model: onnx.ModelProto, payload: int | None = None) -> bool:
    """Whether a model is too large for one protobuf (external data needed). ``ByteSize()`` walks the whole
    message (0.15 s for a 100 MB model, called at every save and session); the tensors' payload is the
    size that matters, plus a generous allowance for the graph structure."""
    payload = tensor_payload(model) if payload is None else payload
    structure = 256 * sum(1 for _ in _all_nodes(model.graph))
    return payload + structure >= EXTERNAL_DATA_THRESHOLD


def tensor_payload(model: onnx.ModelProto) -> int:
    """Bytes of tensor data a model holds (initializers, attributes, subgraphs, functions)."""
    payload = 0
    for t in _all_tensors(model):
        payload += len(t.raw_data) + 8 * (len(t.float_data) + len(t.int32_data) + len(t.int64_data)
                                          + len(t.double_data) + len(t.uint64_data))
        payload += sum(len(x) for x in t.string_data)
    return payload


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)


def external_locations(model: onnx.ModelProto) -> list[tuple[str, str]]:
    out = []
    for tensor in _all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in tensor.external_data}
            out.append((tensor.name, info.get("location", "")))
    return out


def _all_tensors(model: onnx.ModelProto):
    """Every TensorProto a model holds: initializers, TENSOR and TENSORS attributes, in subgraphs and in
    model-local functions too (each may name an external file)."""
    def nodes(node_list):
        for node in node_list:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from walk(attr.g)
                for g in attr.graphs:
                    yield from walk(g)
                if attr.HasField("sparse_tensor"):
                    yield attr.sparse_tensor.values
                    yield attr.sparse_tensor.indices

    def walk(graph: onnx.GraphProto):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        yield from nodes(graph.node)

    yield from walk(model.graph)
    for fn in model.functions:
        yield from nodes(fn.node)


def _external_entry(tensor: onnx.TensorProto, source: Path, base: Path) -> tuple[Path, int, int | None]:
    """The checked (file, offset, length) of one external tensor; a one-line UsageError for each way an
    entry can be wrong."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    name = tensor.name
    if not location or "\0" in location:
        raise UsageError(f"{source}: tensor '{name}' has an invalid external-data location {location!r}; "
                         f"re-export the model")
    loc = Path(location)
    target = (base / loc).resolve()  # symlinks and sub/../ inside the folder are fine; escaping it is not
    if loc.is_absolute() or base not in target.parents:
        raise UsageError(f"{source}: tensor '{name}' keeps its data at '{location}', outside the model's "
                         f"folder; move the data file next to the model")
    if not target.exists():
        raise UsageError(f"{source}: external data file '{location}' of tensor '{name}' is missing; copy it "
                         f"next to the model")
    if not target.is_file():
        raise UsageError(f"{source}: external data '{location}' of tensor '{name}' is not a regular file (a "
                         f"folder, pipe or device); point it at the data file")
    if target == source.resolve():
        raise UsageError(f"{source}: tensor '{name}' names the model file itself as its external data; "
                         f"re-export the model")
    numbers = {}
    for key in ("offset", "length"):
        text = info.get(key)
        if text is None:
            continue
        try:
            numbers[key] = int(text)
        except ValueError:
            raise UsageError(f"{source}: tensor '{name}' has a non-numeric external-data {key} {text!r}; "
                             f"re-export the model") from None
        if numbers[key] < 0:
            raise UsageError(f"{source}: tensor '{name}' has a negative external-data {key} ({text}); "
                             f"re-export the model")
    offset, length = numbers.get("offset", 0), numbers.get("length")
    size = target.stat().st_size
    if offset + (length or 0) > size:
        raise UsageError(f"{source}: tensor '{name}' reads bytes {offset}..{offset + (length or 0)} of "
                         f"'{location}', which has {size}; the data file is truncated or belongs to another "
                         f"model")
    return target, offset, length


def _load_external(model: onnx.ModelProto, source: Path) -> None:
    """Read every external tensor's bytes into the model, each entry checked first (onnx's own loader turns
    most bad entries into tracebacks and refuses in-folder symlinks)."""
    base = source.parent.resolve()
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        target, offset, length = _external_entry(tensor, source, base)
        with open(target, "rb") as f:
            f.seek(offset)
            data = f.read() if length is None else f.read(length)
        itemsize = _ITEMSIZE.get(tensor.data_type)
        count = 1
        for d in tensor.dims:
            count *= d
        if itemsize is not None and len(data) != count * itemsize:
            raise UsageError(f"{source}: tensor '{tensor.name}' needs {count * itemsize} bytes, its external "
                             f"data holds {len(data)}; re-export the model")
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


_ITEMSIZE: dict[int, int] = {t: onnx.helper.tensor_dtype_to_np_dtype(t).itemsize for t in (
    onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.UINT16,
    onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64, onnx.TensorProto.BOOL,
    onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64)}


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if not p.is_file():  # as every verb's model argument says it
        raise UsageError(f"{p} is a folder, not a file" if p.is_dir() else f"{p}: not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{p}: permission denied; make the file readable")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except PermissionError:
        raise UsageError(f"{p}: permission denied; make the file readable") from None
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise UsageError(f"{p}: not an ONNX model ({type(err).__name__}); export the network to .onnx "
                         f"first") from None
    if not model.HasField("graph") or not model.graph.node:
        raise UsageError(f"{p}: not an ONNX model with a graph (no nodes found)")
    _load_external(model, p)
    check_wellformed(model, str(p))
    return model


def check_wellformed(model: onnx.ModelProto, label_text: str) -> None:
    """The ONNX checker (structure, types, attributes), so a malformed file fails here with one line."""
    g = model.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""} | \
        {t.values.name for t in g.sparse_initializer}
    for node in g.node:  # a tensor nothing produces: the checker calls it a sort error, cut off mid-sentence
        for name in node.input:
            if name not in known:
                later = any(name in n.output for n in g.node)
                why = "before the node that produces it (the graph is not topologically sorted)" if later else \
                    "which no node, input or initializer produces"
                label = f"'{node.name}' ({node.op_type})" if node.name else f"<unnamed {node.op_type}>"
                raise UsageError(f"{label_text}: node {label} reads tensor '{name}' {why}; re-export the model")
        known.update(node.output)
    for t in model.graph.initializer:  # the checker below sees the graph without the weights' bytes
        _check_payload(t, f"{label_text}: initializer '{t.name}'")
    for node in g.node:  # Constant values too (paddle2onnx stores every weight that way)
        for a in node.attribute:
            if a.HasField("t"):
                _check_payload(a.t, f"{label_text}: the value of Constant {_node_text(node)}")
    try:
        # structure, types and attributes; large weights are replaced by typed inputs first, so the check does
        # not serialise (copy) every weight of a large model
        onnx.checker.check_model(skeleton(model))
    except (onnx.checker.ValidationError, ValueError) as err:
        first = " ".join(str(err).split())[:240] or type(err).__name__
        raise UsageError(f"{label_text}: not a valid ONNX model ({first}); re-export it") from None


def _node_text(node: onnx.NodeProto) -> str:
    return f"'{node.name}' ({node.op_type})" if node.name else f"<unnamed {node.op_type} -> {node.output[0]}>"


# the typed field that holds one value per element, by data type (the others: raw_data, or packed types)
_ONE_PER_ELEMENT: dict[int, str] = {onnx.TensorProto.FLOAT: "float_data", onnx.TensorProto.DOUBLE: "double_data",
                    onnx.TensorProto.INT64: "int64_data", onnx.TensorProto.UINT64: "uint64_data",
                    onnx.TensorProto.INT32: "int32_data", onnx.TensorProto.STRING: "string_data"}


def _check_payload(t: onnx.TensorProto, what: str) -> None:
    """A tensor stored in the file (not external) must hold as many values as its dims declare: a file whose
    dims say 1e9 and whose data is empty is malformed, not a 4 GB weight."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return
    count = 1
    for d in t.dims:
        count *= d
    itemsize = _ITEMSIZE.get(t.data_type)
    if t.HasField("raw_data"):
        if itemsize is not None and len(t.raw_data) != count * itemsize:
            raise UsageError(f"{what} holds {len(t.raw_data)} bytes for shape {list(t.dims)} "
                             f"({count * itemsize} needed); re-export the model")
        return
    stored = sum(len(getattr(t, f)) for f in ("float_data", "int32_data", "int64_data", "double_data",
                                               "uint64_data", "string_data"))
    if count and not stored:
        raise UsageError(f"{what} declares shape {list(t.dims)} but holds no data; re-export the model")
    field = _ONE_PER_ELEMENT.get(t.data_type)
    if field is not None and len(getattr(t, field)) != count:
        raise UsageError(f"{what} holds {len(getattr(t, field))} values for shape {list(t.dims)} ({count} "
                         f"needed); re-export the model")


def skeleton(model: onnx.ModelProto, value_info: bool = True) -> onnx.ModelProto:
    """The model without its large initializers (typed inputs instead): what shape inference and the
    checker need, without a copy of every weight. ``value_info=False`` drops the recorded intermediate
    shapes, which go stale when a user edits an input's dimensions."""
    from onnx import helper

    g = model.graph
    inputs = list(g.input)
    names = {i.name for i in inputs}
    small = []
    for t in g.initializer:
        count = 1
        for d in t.dims:
            count *= d
        if count > SKELETON_ELEMENTS:
            if t.name not in names:
                inputs.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            small.append(t)
    graph = helper.make_graph(list(g.node), g.name or "g", inputs, list(g.output), initializer=small,
                              value_info=list(g.value_info) if value_info else [],
                              sparse_initializer=list(g.sparse_initializer))
    out = helper.make_model(graph, opset_imports=list(model.opset_import), functions=list(model.functions))
    out.ir_version = model.ir_version
    return out


SKELETON_ELEMENTS = 4096  # initializers larger than this are left out of the skeleton


# models whose weights exceed this go to onnxruntime as a file with external data, which it maps instead of
# copying (from bytes it holds the bytes, its parsed proto and its tensors at once: 3x the weights)
MAP_THRESHOLD = 32 << 20


def model_bytes_or_path(model: onnx.ModelProto, tmp_dir: str) -> str | bytes:
    """What onnxruntime loads: bytes for small models, a file with external data (mapped, not copied) for
    larger ones and for models over 2 GB."""
    payload = tensor_payload(model)  # one pass over the weights for both decisions
    if not is_large(model, payload) and payload < MAP_THRESHOLD:
        return model.SerializeToString()
    path = Path(tmp_dir) / "model.onnx"
    save_external(model, path, "model.onnx.data")
    return str(path)


def save_external(model: onnx.ModelProto, path: Path, data_name: str, threshold: int = 1024) -> None:
    """Write ``path`` and its ``data_name`` beside it without copying the model's weights: each initializer of
    at least ``threshold`` bytes goes to the data file (at a 64 KiB-aligned offset, so onnxruntime maps it)
    and a light proto that refers to it is serialised. ``model`` itself is not changed (clearing and
    restoring its bytes would grow the protobuf arena by the model's size every time)."""
    from onnx import helper

    g = model.graph
    light: list[onnx.TensorProto] = []
    with open(path.parent / data_name, "wb") as f:
        for t in g.initializer:
            if t.data_location == onnx.TensorProto.EXTERNAL or not t.HasField("raw_data") or \
                    len(t.raw_data) < threshold:
                light.append(t)
                continue
            f.write(b"\0" * (-f.tell() % 65536))
            offset = f.tell()
            data = t.raw_data
            f.write(data)
            ref = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=list(t.dims),
                                   data_location=onnx.TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(len(data)))):
                entry = ref.external_data.add()
                entry.key, entry.value = key, value
            light.append(ref)
            del data
    graph = helper.make_graph(list(g.node), g.name, list(g.input), list(g.output), initializer=light,
                              value_info=list(g.value_info), sparse_initializer=list(g.sparse_initializer),
                              doc_string=g.doc_string or None)
    out = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(out, field, getattr(model, field))
    out.opset_import.extend(model.opset_import)
    out.metadata_props.extend(model.metadata_props)
    out.functions.extend(model.functions)
    out.graph.CopyFrom(graph)
    with open(path, "wb") as f:
        f.write(out.SerializeToString())


def save_model(model: onnx.ModelProto, path: str | os.PathLike, *, source: str | os.PathLike | None = None) -> None:
    """Write atomically; models too large for one protobuf get a ``NAME.data`` file beside them."""
    out = Path(path)
    if source is not None and out.exists() and out.resolve() == Path(source).resolve():
        raise UsageError(f"{out}: refusing to overwrite the input model; choose another -o path")
    if not out.parent.exists():
        raise UsageError(f"{out.parent}: output folder does not exist")
    external = is_large(model)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".edgefold-") as tmp:
        tmp_model = Path(tmp) / out.name
        data_name = out.name + ".data"
        if external:
            save_external(model, tmp_model, data_name)
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
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; outputs are ordinary files others may read (as RunOutputs's)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
