"""Polygraphy runners: onnxruntime for ONNX models, TensorRT (through build/trt.py) for engines."""
from __future__ import annotations

import numpy as np
import onnx


def onnx_runner(model: onnx.ModelProto, name: str):
    """Polygraphy's onnxruntime runner over edgefold's CPU session, graph optimisations off as in the fold's own
    check: onnxruntime's optimised kernels move a plain 3x3 conv classifier by 1.4e-4 of its output, beyond the
    fp32 bound, so the original and a correct fold would disagree by the optimiser's rounding, not the fold's.
    The session is made when the runner is activated (a large model through a temporary file, read then)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from edgefold.backends.ort import session

    return OnnxrtRunner(lambda: session(model), name=name)


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
