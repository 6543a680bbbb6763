"""What a build did, as the text ``edgefold build`` prints: the precision, the layers kept in float, each
output's figures against the floor, the other candidates measured, the files written."""
from __future__ import annotations

from dataclasses import dataclass

from edgefold.core.metrics import OutputStats
from edgefold.deploy.candidate import Candidate
from edgefold.deploy.spec import EnginePlan
from edgefold.precision import accuracy


def figures(s: OutputStats) -> str:
    parts = [f"max rel error {s.max_rel:.3g}"]
    if s.top1_agreement is not None:
        parts.append(f"top-1 {100 * s.top1_agreement:.1f}%")
    if s.map_iou is not None:
        parts.append(f"map IoU {s.map_iou:.3f} (min {s.map_iou_min:.3f})")
    if s.false_positive is not None:
        parts.append(f"false positives {100 * s.false_positive:.2f}%")
    if s.top1_agreement is None and s.map_iou is None and s.false_positive is None and s.cosine is not None:
        parts.append(f"cosine {s.cosine:.4f}")
    return ", ".join(parts)


@dataclass(frozen=True)
class BuildResult:
    plan: EnginePlan
    chosen: Candidate
    others: tuple[Candidate, ...]
    sidecar: dict
    engine_written: bool
    files: tuple[str, ...]

    def to_text(self) -> str:
        c = self.chosen
        reused = " - reused the calibrated model of the previous build" if self.sidecar.get("reused_calibration") else ""
        lines = [f"prepared {self.sidecar['precision']} model ({c.label}) for TensorRT {self.plan.trt_major}.x{reused}"]
        int8 = self.sidecar.get("int8")
        if int8:
            kept, share = int8["kept_float"], int8.get("int8_mac_share")
            line = f"  INT8 for {100 * share:.1f}% of conv/matmul MACs" if share is not None else "  INT8"
            line += (f", {len(kept)} layer{'s' if len(kept) != 1 else ''} kept in FP16: {', '.join(kept)}" if kept
                     else ", no layer kept in FP16")
            if int8.get("search"):
                line += f" (search: {len(int8['search']['steps'])} tries, {int8['search']['seconds']:.0f} s)"
            lines.append(line)
        for label, stats in (("calibration", c.on_calibration), ("held-out", c.on_held_out)):
            for s in stats:
                lines.append(f"  {label:11s} {s.name}: {figures(s)}  {'ok' if s.passed else 'BELOW FLOOR'}"
                             f"{f' ({s.decided_by})' if s.decided_by else ''}")
        for o in self.others:
            before = " before the search" if o.label == c.label else ""
            lines.append(f"  (also measured {o.label}{before}: score {accuracy.score(o.on_held_out or o.on_calibration):.4f}"
                         f" vs {accuracy.score(c.on_held_out or c.on_calibration):.4f} for {c.label})")
        lines += [f"wrote {f}" for f in self.files]
        if not self.engine_written:
            script = next(f for f in self.files if f.endswith(".trtexec.sh"))
            lines.append(f"no engine built (--no-engine): on the device run {script} or `edgefold build`")
        return "\n".join(lines)
