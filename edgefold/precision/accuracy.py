"""Accuracy of a prepared (FP16 or Q/DQ) model against the fp32 folded model, in onnxruntime on the CPU."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.backends.ort import session
from edgefold.compare.tolerance import Tolerance
from edgefold.core.frames import InputFeed
from edgefold.core.metrics import OutputStats, output_stats


def reference_outputs(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]
                      ) -> tuple[list[str], list[list[np.ndarray]]]:
    """(output names, outputs per frame) of the reference model, computed once for every candidate."""
    if not frames:
        return [], []
    s_ref = session(model, optimize=True)
    names = [o.name for o in s_ref.get_outputs()]
    return names, [s_ref.run(names, {feed.name: feed.tensor(f)}) for f in frames]


def measure_against(reference: tuple[list[str], list[list[np.ndarray]]], prepared: onnx.ModelProto,
                    feed: InputFeed, frames: list[np.ndarray], tolerance: Tolerance) -> tuple[OutputStats, ...]:
    """Per-output statistics of ``prepared`` against precomputed reference outputs, each with its verdict."""
    names, refs = reference
    if not frames:
        return ()
    s_prep = session(prepared, optimize=True)
    return judge(reference, [s_prep.run(names, {feed.name: feed.tensor(f)}) for f in frames], tolerance)


def judge(reference: tuple[list[str], list[list[np.ndarray]]], gots: list[list[np.ndarray]],
          tolerance: Tolerance) -> tuple[OutputStats, ...]:
    """Per-output statistics of outputs computed elsewhere (an engine, say), in the reference's output order,
    against the reference outputs of the same frames, each with its verdict."""
    names, refs = reference
    return tuple(tolerance.judge(output_stats(name, [r[k] for r in refs], [g[k] for g in gots]))
                 for k, name in enumerate(names))


def measure(reference: onnx.ModelProto, prepared: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray],
            tolerance: Tolerance) -> tuple[OutputStats, ...]:
    return measure_against(reference_outputs(reference, feed, frames), prepared, feed, frames, tolerance)


def score(stats: tuple[OutputStats, ...]) -> float:
    """Higher is better: the task metrics where they apply (false positives weigh 10x, so 1 % costs 0.1),
    else the cosine similarity, else 1 - relative error."""
    parts = []
    for s in stats:
        task = [v for v in (s.top1_agreement, s.map_iou) if v is not None]
        if s.false_positive is not None:
            task.append(1.0 - min(1.0, 10 * s.false_positive))
        if not task:
            task.append(s.cosine if s.cosine is not None else 1.0 - min(1.0, s.max_rel))
        parts.extend(task)
    return float(np.mean(parts)) if parts else 0.0
