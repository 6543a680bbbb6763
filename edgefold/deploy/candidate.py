"""A candidate prepared model and what it measured against the fp32 reference: the unit every build step passes."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgefold import verdict
from edgefold.compare.tolerance import top1_figures
from edgefold.core.metrics import OutputStats
from edgefold.precision.calib import CalibSet
from edgefold.precision.mixed import SearchResult


@dataclass(frozen=True)
class Candidate:
    strategy: str  # "fp32" | "fp16" | "fp16-flag" | INT8 first conv: "recentre" | "float-first"
    model: onnx.ModelProto
    on_calibration: tuple[OutputStats, ...]
    on_held_out: tuple[OutputStats, ...]
    search: SearchResult | None = None  # INT8: the layers the mixed-precision search kept in float
    calib_method: str | None = None  # INT8: the activation calibrator
    int8_share: float | None = None  # INT8: the share of conv/matmul MACs in INT8 (None: not counted)

    @property
    def label(self) -> str:
        return f"{self.strategy}/{self.calib_method}" if self.calib_method else self.strategy

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.on_calibration + self.on_held_out)


def figures(s: OutputStats) -> str:
    """The figures of one output, as the summary and the one-line refusals print them."""
    parts = [verdict.figures(s, who="the fp32 model")] if s.numeric_decides else []  # INT8: the task decides
    if s.top1_agreement is not None:
        parts.append(f"top-1 {top1_figures(s)}")
    if s.map_iou is not None:
        parts.append(f"map IoU {s.map_iou:.3f} (min {s.map_iou_min:.3f})")
    if s.false_positive is not None:
        parts.append(f"false positives {100 * s.false_positive:.2f}%")
    if s.top1_agreement is None and s.map_iou is None and s.false_positive is None and s.cosine is not None:
        parts.append(f"cosine {s.cosine:.4f}")
    return ", ".join(parts)


def int8_share(model: onnx.ModelProto, calib: CalibSet) -> float | None:
    """The share of conv/matmul MACs the model runs in INT8, for one calibration frame's size."""
    import numpy as np

    from edgefold.precision.mixed import int8_mac_share

    h, w = np.shape(calib.frames[0])[-2:] if calib.frames else (0, 0)
    try:
        return int8_mac_share(model, (int(h), int(w)) if calib.frames else None)
    except Exception:  # noqa: BLE001 - the share is information; a model inspect cannot count still builds
        return None
