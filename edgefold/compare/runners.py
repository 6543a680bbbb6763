"""Polygraphy runners: onnxruntime for ONNX models, TensorRT (through build/trt.py) for engines."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.graph.io import model_bytes_or_path
from edgefold.graph.names import with_unique_node_names


def onnx_runner(model: onnx.ModelProto, name: str):
    """Polygraphy's onnxruntime runner; a model over 32 MB goes through a temporary file with external data,
    removed with the runner (the session loads it lazily, when the runner is activated)."""
    import tempfile

    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    model = with_unique_node_names(model, fill_empty=False)  # onnxruntime refuses repeated node names
    tmp = tempfile.TemporaryDirectory(prefix="edgefold-cmp-")
    runner = OnnxrtRunner(SessionFromOnnx(model_bytes_or_path(model, tmp.name + "/"), providers=["cpu"]), name=name)
    # the folder lives, and is cleaned up, with the runner
    runner.edgefold_tmp = tmp  # type: ignore[attr-defined]
    return runner


def engine_runner(path: str):
    from edgefold.backends.trt import trt_runner

    return trt_runner(path, "candidate")


def run(runner, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Outputs per feed, through Polygraphy's Comparator (each runner gets its own exact-name feeds)."""
    from polygraphy.comparator import Comparator

    results = Comparator.run([runner], data_loader=feeds)
    _, iterations = results[0]
    return [{k: np.asarray(v) for k, v in it.items()} for it in iterations]


def polygraphy_verdict(ref: list[dict], cand: list[dict], limits: dict[str, float]) -> bool:
    """Polygraphy's own accuracy check on the merged RunResults: max abs error <= the limit per output."""
    from polygraphy.comparator import Comparator, RunResults
    from polygraphy.comparator.compare import SimpleCompareFunc

    merged = RunResults()
    merged.add(ref, runner_name="reference")
    merged.add([{k: v for k, v in c.items() if k in limits} for c in cand], runner_name="candidate")
    func = SimpleCompareFunc(check_error_stat="max", atol={"": 0.0, **limits}, rtol={"": 0.0})
    return bool(Comparator.compare_accuracy(merged, compare_func=func))
