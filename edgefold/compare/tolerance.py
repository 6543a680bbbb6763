"""Tolerances by the candidate's precision: a numeric bound on every output plus, for reduced precision,
task-level agreement. All overridable per output (``--atol/--rtol NAME=VALUE``).

| precision | numeric bound per output                         | top-1 agreement | map IoU |
|-----------|--------------------------------------------------|-----------------|---------|
| fp32      | max abs error <= 1e-6 + 1e-4 * max |reference|   | reported        | reported|
| fp16      | max abs error <= 1e-3 + 2e-2 * max |reference|   | >= 99 %         | >= 95 % |
| int8      | max abs error <= 1e-2 + 1.5e-1 * max |reference| | >= 90 %         | >= 85 % |
"""
from __future__ import annotations

from dataclasses import dataclass

from edgefold.compare.metrics import OutputStats
from edgefold.errors import UsageError

DEFAULTS = {"fp32": (1e-6, 1e-4, None, None), "fp16": (1e-3, 2e-2, 0.99, 0.95), "int8": (1e-2, 0.15, 0.90, 0.85)}


@dataclass(frozen=True)
class Tolerance:
    precision: str
    atol: dict[str, float]
    rtol: dict[str, float]
    top1: float | None
    iou: float | None

    def _get(self, table: dict[str, float], name: str) -> float:
        return table.get(name, table[""])

    def numeric_limit(self, s: OutputStats) -> float:
        return self._get(self.atol, s.name) + self._get(self.rtol, s.name) * s.reference_max

    def passes(self, s: OutputStats) -> bool:
        ok = s.max_abs <= self.numeric_limit(s)
        if self.top1 is not None and s.top1_agreement is not None:
            ok = ok and s.top1_agreement >= self.top1
        if self.iou is not None and s.map_iou is not None:
            ok = ok and s.map_iou >= self.iou
        return bool(ok)

    def describe(self) -> str:
        parts = [f"max abs <= {self.atol['']:g} + {self.rtol['']:g} * max |reference|"]
        if self.top1 is not None:
            parts.append(f"top-1 agreement >= {100 * self.top1:g}%")
        if self.iou is not None:
            parts.append(f"map IoU >= {100 * self.iou:g}%")
        extra = {k: v for k, v in {**self.atol, **self.rtol}.items() if k}
        return ", ".join(parts) + (f"; per-output overrides {extra}" if extra else "")

    def to_json(self) -> dict:
        return {"precision": self.precision, "atol": self.atol, "rtol": self.rtol, "top1": self.top1, "iou": self.iou}


def tolerance_for(precision: str, atol: dict[str, float], rtol: dict[str, float]) -> Tolerance:
    if precision not in DEFAULTS:
        raise UsageError(f"--precision must be fp32, fp16 or int8, not {precision!r}")
    a, r, top1, iou = DEFAULTS[precision]
    return Tolerance(precision, {"": a, **atol}, {"": r, **rtol}, top1, iou)
