"""Accuracy floors by the candidate's precision: a numeric bound on every output plus task-level floors.
Overridable per output (``--atol/--rtol NAME=VALUE``) and per metric (``--accuracy-floor iou=0.95,...``).

| precision | numeric bound per output                 | decides               | task floors                     |
|-----------|------------------------------------------|-----------------------|---------------------------------|
| fp32      | max abs <= 1e-6 + 1e-4 * max |reference|  | the bound (*)         | reported                        |
| fp16      | max abs <= 1e-3 + 2e-2 * max |reference|  | bound (*), task floors| top-1 >= 99 %, map IoU >= 0.95  |
| int8      | max abs <= 1e-2 + 0.15 * max |reference|  | the task floors       | top-1 >= 98 %; map IoU >= 0.90  |
|           | (shown, not decisive)                    |                       | and false positives <= 1 %;     |
|           |                                          |                       | other outputs cosine >= 0.99    |

(*) per frame, or within ``edgefold.verdict.K`` times the reference's own float32 noise floor on that frame;
``--atol``/``--rtol`` replace this rule by the bound they give.

Why INT8 is judged by the task: a sigmoid/probability map under INT8 always has some pixel that flips
across the threshold, an error of about 1 on an output whose maximum is 1, so a numeric bound on the map
fails on every model. What the user of the map sees is the thresholded map: IoU on frames with
positives, false positives on frames without. Classifier-shaped outputs are judged by top-1 agreement,
dense maps by IoU and false positives, any other output (raw regression or detection heads) by cosine
similarity.

Top-1 agreement is judged twice, and both must meet the floor: as seen (the share of frames whose top-1
class is the reference's) and as estimated from the margins (``edgefold.core.metrics.top1_disagreement``:
each frame's loss of top-1 lead tried against every frame's margin). N frames can only see a rate in steps
of 1/N - 30 held-out frames that all agree say little about a 3 % rate - the estimate sees rates far below.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from edgefold import verdict
from edgefold.core.metrics import OutputStats
from edgefold.errors import UsageError

FLOOR_KEYS = ("top1", "iou", "fp", "cosine")


@dataclass(frozen=True)
class Floors:
    top1: float | None = None  # minimum top-1 agreement (classifier-shaped outputs)
    iou: float | None = None  # minimum mean IoU over frames with positives (dense maps)
    fp: float | None = None  # maximum false-positive pixel rate on frames without positives (dense maps)
    cosine: float | None = None  # minimum per-frame cosine similarity (outputs without a task metric)

    @staticmethod
    def parse(text: str) -> dict[str, float]:
        """``iou=0.95,fp=0.005,top1=0.99,cosine=0.995`` -> a dict of the given keys."""
        out: dict[str, float] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not sep or key.strip() not in FLOOR_KEYS or not 0.0 <= number <= 1.0:
                raise UsageError(f"--accuracy-floor expects KEY=VALUE with KEY in {', '.join(FLOOR_KEYS)} and VALUE "
                                 f"in 0..1 (e.g. iou=0.95,fp=0.005), got {part!r}")
            out[key.strip()] = number
        return out


DEFAULTS = {
    "fp32": (1e-6, 1e-4, True, Floors()),
    "fp16": (1e-3, 2e-2, True, Floors(top1=0.99, iou=0.95)),
    "int8": (1e-2, 0.15, False, Floors(top1=0.98, iou=0.90, fp=0.01, cosine=0.99)),
}


@dataclass(frozen=True)
class Tolerance:
    precision: str
    atol: dict[str, float]
    rtol: dict[str, float]
    floors: Floors
    numeric_decides: bool  # fp32/fp16: the bound must hold; int8: the task floors decide, the bound is shown
    noise_floor: bool = True  # a frame within K x the reference's own noise floor passes; off with --atol/--rtol

    @property
    def top1(self) -> float | None:
        return self.floors.top1

    @property
    def iou(self) -> float | None:
        return self.floors.iou

    def _get(self, table: dict[str, float], name: str) -> float:
        return table.get(name, table[""])

    def numeric_limit(self, s: OutputStats) -> float:
        return self._get(self.atol, s.name) + self._get(self.rtol, s.name) * s.reference_max

    def numeric_decides_for(self, s: OutputStats) -> bool:
        """Whether the numeric bound is part of the verdict for this output (also when it is overridden)."""
        overridden = s.name in self.atol or s.name in self.rtol
        return self.numeric_decides or overridden or not self._task_checks(s)

    def _task_checks(self, s: OutputStats) -> list[tuple[str, bool]]:
        f = self.floors
        checks: list[tuple[str, bool]] = []
        if f.top1 is not None and s.top1_judged is not None:
            checks.append((f"top-1 {top1_figures(s)} >= {100 * f.top1:g}%", s.top1_judged >= f.top1))
        if f.iou is not None and s.map_iou is not None:
            checks.append((f"map IoU {_apart(s.map_iou, f.iou, 3)} >= {f.iou:g}", s.map_iou >= f.iou))
        if f.fp is not None and s.false_positive is not None:
            checks.append((f"false positives {100 * s.false_positive:.2f}% <= {100 * f.fp:g}%",
                           s.false_positive <= f.fp))
        if not checks and f.cosine is not None and s.cosine is not None and not self.numeric_decides:
            checks.append((f"cosine {_apart(s.cosine, f.cosine, 4)} >= {f.cosine:g}", s.cosine >= f.cosine))
        return checks

    def verdict(self, s: OutputStats) -> tuple[bool, str]:
        """(passed, which metrics decided, with their values)."""
        checks = self._task_checks(s)
        if self.numeric_decides_for(s):
            checks.insert(0, verdict.check(s if self.noise_floor else dataclasses.replace(s, frame_floor=()),
                                           self.numeric_limit(s)))
        failed = [_failed(text) for text, ok in checks if not ok]  # the comparison that failed: 0.913 < 0.97
        return not failed, "; ".join(failed or [text for text, _ in checks])

    def passes(self, s: OutputStats) -> bool:
        return self.verdict(s)[0]

    def judge(self, s: OutputStats) -> OutputStats:
        ok, why = self.verdict(s)
        return dataclasses.replace(s.with_verdict(ok, why), numeric_decides=self.numeric_decides_for(s))

    def describe(self) -> str:
        bound = f"max abs <= {self.atol['']:g} + {self.rtol['']:g} * max |reference|"
        if self.numeric_decides and self.noise_floor:
            bound = verdict.describe(bound)
        f = self.floors
        task = [t for t in (
            f"top-1 agreement >= {100 * f.top1:g}% (seen, and estimated from the margins)" if f.top1 is not None else "",
            f"map IoU >= {f.iou:g} on frames with positives" if f.iou is not None else "",
            f"false positives <= {100 * f.fp:g}% on frames without" if f.fp is not None else "",
            f"cosine >= {f.cosine:g} for other outputs" if f.cosine is not None and not self.numeric_decides else "",
        ) if t]
        extra = {k: v for k, v in {**self.atol, **self.rtol}.items() if k}
        head = bound if self.numeric_decides else f"{', '.join(task)} (numeric bound shown, not decisive: {bound})"
        if self.numeric_decides and task:
            head += ", " + ", ".join(task)
        return head + (f"; per-output overrides {extra}" if extra else "")

    def to_json(self) -> dict:
        return {"precision": self.precision, "atol": self.atol, "rtol": self.rtol,
                "numeric_decides": self.numeric_decides, **dataclasses.asdict(self.floors)}


def tolerance_for(precision: str, atol: dict[str, float], rtol: dict[str, float],
                  floors: dict[str, float] | None = None) -> Tolerance:
    if precision not in DEFAULTS:
        raise UsageError(f"--precision must be fp32, fp16 or int8, not {precision!r}")
    a, r, numeric, base = DEFAULTS[precision]
    return Tolerance(precision, {"": a, **atol}, {"": r, **rtol}, dataclasses.replace(base, **(floors or {})), numeric,
                     noise_floor=not (atol or rtol))  # a bound the user gives is the bound


def top1_figures(s: OutputStats) -> str:
    """The top-1 agreement seen on the frames and the one estimated from their margins (where measured)."""
    seen = f"{100 * s.top1_agreement:.1f}%" if s.top1_agreement is not None else ""
    if s.top1_estimate is None:
        return seen
    return f"{seen} seen, {100 * s.top1_estimate:.1f}% by margins" if seen else f"{100 * s.top1_estimate:.1f}% by margins"


def _failed(check: str) -> str:
    """A check's text as the comparison that holds when it fails (``a >= b`` -> ``a < b``)."""
    return check.replace(" >= ", " < ", 1) if " >= " in check else check.replace(" <= ", " > ", 1)


def _apart(value: float, bound: float, places: int) -> str:
    """``value`` with ``places`` decimals, or more where fewer would print the bound itself (0.9699 vs 0.97)."""
    while places < 8 and value != bound and round(value, places) == round(bound, places):
        places += 1
    return f"{value:.{places}f}"
