"""Accuracy of a prepared (FP16 or Q/DQ) model against the fp32 folded model, in onnxruntime on the CPU. The
numeric bound is judged per frame against the fp32 model's own float32 noise floor (``edgefold.verdict``)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx

from edgefold import verdict
from edgefold.backends.ort import session
from edgefold.compare.tolerance import Tolerance
from edgefold.core.frames import InputFeed
from edgefold.core.metrics import OutputStats, output_stats


class References(NamedTuple):
    names: list[str]
    outputs: list[list[np.ndarray]]  # per frame, per output
    floors: list[list[float]]  # per frame, per output: the reference's own float32 noise floor


def reference_outputs(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> References:
    """The reference model's outputs per frame, computed once for every candidate, and its noise floor there."""
    if not frames:
        return References([], [], [])
    probe = verdict.NoiseProbe(model, optimize=True)  # its unperturbed run is the reference (x * 1 is exact)
    measured = [probe.run({feed.name: feed.tensor(f)}) for f in frames]
    return References(probe.names, [m.outputs for m in measured], [m.floors for m in measured])


def measure_against(reference: References | tuple, prepared: onnx.ModelProto, feed: InputFeed,
                    frames: list[np.ndarray], tolerance: Tolerance) -> tuple[OutputStats, ...]:
    """Per-output statistics of ``prepared`` against precomputed reference outputs, each with its verdict."""
    if not frames:
        return ()
    names = reference[0]
    s_prep = session(prepared, optimize=True)
    return judge(reference, [s_prep.run(names, {feed.name: feed.tensor(f)}) for f in frames], tolerance)


def judge(reference: References | tuple, gots: list[list[np.ndarray]], tolerance: Tolerance
          ) -> tuple[OutputStats, ...]:
    """Per-output statistics of outputs computed elsewhere (an engine, say), in the reference's output order,
    against the reference outputs of the same frames (and, where measured, its noise floor), each with its verdict."""
    names, refs = reference[0], reference[1]
    floors = reference[2] if len(reference) > 2 else None
    return tuple(tolerance.judge(output_stats(name, [r[k] for r in refs], [g[k] for g in gots],
                                              floors=[f[k] for f in floors] if floors else None))
                 for k, name in enumerate(names))


def measure(reference: onnx.ModelProto, prepared: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray],
            tolerance: Tolerance) -> tuple[OutputStats, ...]:
    return measure_against(reference_outputs(reference, feed, frames), prepared, feed, frames, tolerance)


def score(stats: tuple[OutputStats, ...]) -> float:
    """Higher is better: the task metrics where they apply (top-1: the lower of the agreement seen and the one
    estimated from the margins; false positives weigh 10x, so 1 % costs 0.1),
    else the cosine similarity, else 1 - relative error."""
    parts = []
    for s in stats:
        task = [v for v in (s.top1_judged, s.map_iou) if v is not None]
        if s.false_positive is not None:
            task.append(1.0 - min(1.0, 10 * s.false_positive))
        if not task:
            task.append(s.cosine if s.cosine is not None else 1.0 - min(1.0, s.max_rel))
        parts.extend(task)
    return float(np.mean(parts)) if parts else 0.0
