"""onnxruntime sessions on the CPU, for every check edgefold runs (models over 2 GB included)."""
from __future__ import annotations

import tempfile

import onnx

from edgefold.graph.io import model_bytes_or_path
from edgefold.graph.names import with_unique_node_names


def session(model: onnx.ModelProto, *, optimize: bool = False, threads: int | None = None):  # noqa: ANN201
    """A CPU session. ``optimize=False`` (graph optimisations off) is what the equivalence checks use; a model
    too large for one protobuf goes through a temporary file with external data, read at creation. Node names
    that repeat (valid ONNX, which onnxruntime refuses) are made unique in a private copy: they change no value."""
    model = with_unique_node_names(model, fill_empty=False)
    with tempfile.TemporaryDirectory(prefix="edgefold-ort-") as tmp:
        return session_from(model_bytes_or_path(model, tmp), optimize=optimize, threads=threads)


def session_from(payload: str | bytes, *, optimize: bool = False, threads: int | None = None):  # noqa: ANN201
    """A CPU session of a serialised model or a model file, with the options of ``session`` (the caller makes
    repeated node names unique, as ``session`` does)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize \
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(payload, so, providers=["CPUExecutionProvider"])
