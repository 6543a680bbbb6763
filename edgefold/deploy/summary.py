"""What a build did, as the text ``edgefold build`` prints: the precision, the layers kept in float, each
output's figures against the floor, the other candidates measured, the files written."""
from __future__ import annotations

from dataclasses import dataclass

from edgefold.deploy.candidate import Candidate, figures
from edgefold.deploy.ship import Shipped
from edgefold.deploy.spec import EnginePlan
from edgefold.precision import accuracy


@dataclass(frozen=True)
class BuildResult:
    plan: EnginePlan
    chosen: Candidate
    others: tuple[Candidate, ...]
    sidecar: dict
    shipped: Shipped
    files: tuple[str, ...]
    fold_summary: str = ""  # what the fold did, as ``edgefold fold`` prints it (empty with --no-fold)

    @property
    def engine_written(self) -> bool:
        return self.shipped.engine is not None

    def to_text(self) -> str:
        c = self.chosen
        reused = " - reused the calibrated model of the previous build" if self.sidecar.get("reused_calibration") else ""
        lines = [self.fold_summary] if self.fold_summary else []
        how = f" ({c.label})" if c.label != self.sidecar["precision"] else ""
        lines.append(f"prepared {self.sidecar['precision']} model{how} for TensorRT {self.plan.trt_major}.x{reused}")
        int8 = self.sidecar.get("int8")
        if int8:
            kept, share = int8["kept_float"], int8.get("int8_mac_share")
            line = f"  INT8 for {100 * share:.1f}% of conv/matmul MACs" if share is not None else "  INT8"
            prec = int8.get("kept_precision", "fp16").upper()
            line += (f", {len(kept)} layer{'s' if len(kept) != 1 else ''} kept in {prec}: {', '.join(kept)}" if kept
                     else f", no layer kept in {prec}")
            if kept and int8.get("kept_written_as"):
                line += f" ({int8['kept_written_as']})"
            if int8.get("search"):
                rebuilds = max(0, len(self.shipped.builds) - 1)
                steps = len(int8["search"]["steps"])
                line += (f" (search: {steps} {'try' if steps == 1 else 'tries'} in onnxruntime"
                         f"{f', {rebuilds} engine rebuild' + ('s' if rebuilds > 1 else '') if rebuilds else ''}, "
                         f"{int8['search']['seconds']:.0f} s)")
            lines.append(line)
        lines += _typed_lines(self.sidecar.get("precisions"))
        shipped = self.shipped
        on_engine = shipped.engine is not None
        # how many frames each figure stands on: 100 % of 1 held-out frame says little of a 98 % floor
        frames = self.sidecar.get("calibration") or {}
        lines.append(f"  accuracy measured on: {shipped.measured_on}"
                     + (" (held-out frames; calibration frames in onnxruntime)" if on_engine else "")
                     + f"; {len(frames.get('frames', []))} calibration, {len(frames.get('held_out', []))} held-out "
                       f"frames")
        rows = [("calibration", c.on_calibration), ("held-out", c.on_held_out)]
        if on_engine:
            rows = [("calibration", c.on_calibration), ("held-out", c.on_held_out), ("engine", shipped.on_engine)]
        for label, stats in rows:
            for s in stats:
                lines.append(f"  {label:11s} {s.name}: {figures(s)}  {'ok' if s.passed else 'BELOW FLOOR'}"
                             f"{f' ({s.decided_by})' if s.decided_by else ''}")
        for i, b in enumerate(shipped.builds):
            what = "engine build" if i == 0 else f"rebuild {i}"
            lines.append(f"  {what}: {b.float_layers} layer{'s' if b.float_layers != 1 else ''} in float, "
                         f"{b.seconds:.1f} s{' (timing cache)' if i else ''}, {'ok' if b.passed else 'below the floor'}")
        for o in self.others:
            before = " before the search" if o.label == c.label else ""
            lines.append(f"  (also measured {o.label}{before}: {_coverage(o)}{'meets' if o.passed else 'misses'} the floor, "
                         f"score {_score(o):.4f} vs {_coverage(c, int8)}score {_score(c):.4f} for {c.label})")
        lines += [f"wrote {f}" for f in self.files]
        if not self.engine_written:
            script = next(f for f in self.files if f.endswith(".trtexec.sh"))
            lines.append(f"no engine built (--no-engine): on the device run {script} or `edgefold build`")
        return "\n".join(lines)


def _typed_lines(census: dict | None) -> list[str]:
    """What a strongly typed TensorRT runs in which precision, as the ONNX types it, and why nodes stay FP32."""
    if not census:
        return []
    plural = lambda n, what: f"{n} {what}{'s' if n != 1 else ''}"  # noqa: E731
    head = ", ".join(([plural(census["int8_layers"], "INT8 layer")] if census["int8_layers"] else [])
                     + [plural(census["fp16_nodes"], "FP16 node")])
    lines = [f"  strongly typed: {head}, {plural(census['fp32_nodes'], 'node')} run in FP32 as the ONNX types them"]
    for why, ops in census["fp32_why"].items():
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items(), key=lambda t: -t[1]))
        lines.append(f"    FP32: {listed} - {why}")
    return lines


def _score(c: Candidate) -> float:
    return accuracy.score(c.on_held_out or c.on_calibration)


def _coverage(c: Candidate, int8: dict | None = None) -> str:
    share = (int8 or {}).get("int8_mac_share", c.int8_share)
    return f"INT8 {100 * share:.1f}% of MACs, " if share is not None else ""
