"""A candidate prepared model and what it measured against the fp32 reference: the unit every build step passes."""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgefold.core.metrics import OutputStats
from edgefold.precision.mixed import SearchResult


@dataclass(frozen=True)
class Candidate:
    strategy: str  # "fp32" | "fp16" | "fp16-flag" | INT8 first conv: "recentre" | "float-first"
    model: onnx.ModelProto
    on_calibration: tuple[OutputStats, ...]
    on_held_out: tuple[OutputStats, ...]
    search: SearchResult | None = None  # INT8: the layers the mixed-precision search kept in float
    calib_method: str | None = None  # INT8: the activation calibrator

    @property
    def label(self) -> str:
        return f"{self.strategy}/{self.calib_method}" if self.calib_method else self.strategy

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.on_calibration + self.on_held_out)
