"""``edgefold compare``: a folded model or engine against the original graph, with Polygraphy.

The reference is always the original graph in onnxruntime at fp32. Each model gets its own feed built from
the same raw frame (Polygraphy's ``Comparator.run`` would coerce mismatched inputs with only a warning), the
two runs are merged into one ``RunResults``, and Polygraphy's ``SimpleCompareFunc`` checks the numeric
limits; where the numeric bound decides (fp32, fp16), each frame is judged against the fixed bound or the
original's own float32 noise floor there (``edgefold.verdict``); task-level agreement (top-1, thresholded
maps) is added on top.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from edgefold import verdict
from edgefold.compare.feeds import (
    candidate_feed,
    comparison_frames,
    detect_precision,
    edgefold_meta,
    more_chains,
    read_as_float,
    reference_feed,
    side_inputs,
)
from edgefold.compare.tolerance import Tolerance, tolerance_for
from edgefold.core.contract import Meta, Sidecar, camera_front_end
from edgefold.core.frames import InputFeed, synthetic_frames
from edgefold.core.metrics import OutputStats, channels_first, output_stats
from edgefold.errors import UsageError
from edgefold.graph.io import load_model


@dataclass(frozen=True)
class CompareOptions:
    # what the camera gives and the normalisation a bare original expects (as for ``edgefold fold``)
    channels: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    images: str | None = None
    random: int | None = None  # random frames (plus black, white, edges, page); default 4 without --images
    size: tuple[int, int] | None = None  # frame size for dynamic models without --images
    precision: str | None = None  # fp32 | fp16 | int8; None: from the candidate
    atol: dict[str, float] = field(default_factory=dict)  # per output name, "" for all
    rtol: dict[str, float] = field(default_factory=dict)
    map_threshold: float | None = None
    floors: dict[str, float] = field(default_factory=dict)  # --accuracy-floor overrides: top1, iou, fp, cosine

    @property
    def declares(self) -> bool:
        return self.channels is not None or self.mean is not None or self.std is not None or self.scale is not None


@dataclass(frozen=True)
class Comparison:
    reference: str
    candidate: str
    precision: str
    frames: tuple[str, ...]
    feeds: tuple[InputFeed, InputFeed]
    tolerance: Tolerance
    outputs: tuple[OutputStats, ...]
    polygraphy_passed: bool
    errors: dict  # output name -> (H, W) max error map, for the heatmap

    @property
    def passed(self) -> bool:
        return self.polygraphy_passed and all(o.passed for o in self.outputs)

    def to_json(self) -> dict:
        return {"reference": self.reference, "candidate": self.candidate, "precision": self.precision,
                "passed": self.passed, "polygraphy_passed": self.polygraphy_passed,
                "frames": list(self.frames), "tolerance": self.tolerance.to_json(),
                "feeds": {"reference": self.feeds[0].to_json(), "candidate": self.feeds[1].to_json()},
                "outputs": [o.to_json() for o in self.outputs]}

    def to_text(self) -> str:
        head = ("output", "max abs", "max rel", "floor", "mean", "p99", "border", "interior", "top-1", "map IoU",
                "false +", "cosine", "")
        rows = []
        for o in self.outputs:
            floor = _f(max(o.frame_floor) / (o.reference_max or 1.0)) if o.frame_floor else "-"
            rows.append((o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", floor, f"{o.mean_abs:.3g}", f"{o.p99_abs:.3g}",
                         _f(o.border_max), _f(o.interior_max), _pct(o.top1_agreement), _pct(o.map_iou),
                         _pct(o.false_positive), _f(o.cosine), "ok" if o.passed else "MISMATCH"))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [f"reference {self.reference} (onnxruntime fp32) vs candidate {self.candidate} ({self.precision}), "
                 f"{len(self.frames)} frames"]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in [head, *rows]]
        lines.append(f"tolerance ({self.precision}): {self.tolerance.describe()}")
        lines.append("max rel and floor are shares of max |reference|; floor: the largest move of the original's own "
                     "output under +-1 ulp of its first conv's input" if any(o.frame_floor for o in self.outputs)
                     else "max rel is a share of max |reference|")
        for o in self.outputs:
            if o.frame_floor and self.tolerance.numeric_decides_for(o) and self.tolerance.noise_floor:
                bound = self.tolerance.numeric_limit(o)
                frame = self.frames[verdict.decisive_frame(o, bound)] if o.frame_max_abs else ""
                lines.append(f"  {o.name}: on frame '{frame}', {verdict.figures(o, bound)}")
            if not o.passed:
                lines.append(f"  {o.name}: {o.decided_by}")
        lines.append("PASS" if self.passed else "FAIL: the candidate does not match the original")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def compare(reference_path: str, candidate_path: str, options: CompareOptions | None = None) -> Comparison:
    from edgefold.compare import runners  # Polygraphy, imported when a comparison runs

    options = options or CompareOptions()
    reference = load_model(reference_path)
    if candidate_path.endswith((".engine", ".plan", ".trt")):
        run_candidate = runners.engine_runner(candidate_path)  # exit 4 first where TensorRT is missing
        sidecar = _sidecar(candidate_path)
        feed, order, pixel_max, meta = _engine_feed(sidecar, candidate_path)
        precision = options.precision or sidecar.get("precision", "fp16")
    else:
        candidate = load_model(candidate_path)
        feed, order, pixel_max = candidate_feed(candidate, "candidate")
        meta = edgefold_meta(candidate)
        precision = options.precision or detect_precision(candidate)
        run_candidate = runners.onnx_runner(candidate, "candidate")
    camera = camera_front_end(meta)
    camera_format = camera[0] if camera is not None else None
    if camera is None:
        ref_feed = reference_feed(reference, meta, feed.affine.in_channels, options)
        convert = lambda f: f  # noqa: E731
    else:  # the candidate reads the camera's buffer: the reference gets the float conversion users run today
        fmt, channels, sources = camera
        ref_feed = reference_feed(reference, {Meta.SOURCE_INPUTS: json.dumps(sources)}, channels, options)
        convert = lambda f: fmt.reference(f, channels)  # noqa: E731
        if np.dtype(ref_feed.dtype).kind in "iu" and read_as_float(reference, ref_feed.name):
            ref_feed = dataclasses.replace(ref_feed, dtype="float32")  # the conversion unrounded, as the fold sees it
    frames = comparison_frames(options, feed, order, pixel_max, camera_format)
    ref_feeds = [{ref_feed.name: ref_feed.tensor(convert(f))} for _, f in frames]
    cand_feeds = [{feed.name: feed.tensor(f)} for _, f in frames]
    # more folded inputs (a stereo pair): each gets frames of its own contract, the same for both models
    for k, (extra_ref, extra_cand) in enumerate(more_chains(meta)):
        h, w = extra_cand.static_size() or options.size or (160, 224)
        extra = [synthetic_frames(h, w, extra_cand.affine.in_channels, pixel_max, seed=200 + k + i)[i % 5]
                 for i in range(len(frames))]
        for fr, fc, x in zip(ref_feeds, cand_feeds, extra):
            fr[extra_ref.name], fc[extra_cand.name] = extra_ref.tensor(x), extra_cand.tensor(x)
    side = side_inputs(reference, set(ref_feeds[0]))
    for fr, fc in zip(ref_feeds, cand_feeds):
        fr.update(side)
        fc.update(side)
    _check_shapes(reference, reference_path, "reference", ref_feeds[0])
    if not candidate_path.endswith((".engine", ".plan", ".trt")):
        _check_shapes(candidate, candidate_path, "candidate", cand_feeds[0])
    ref_results = _run_onnx(lambda: runners.run(runners.onnx_runner(reference, "reference"), ref_feeds),
                            "reference", reference_path)
    cand_results = _run_onnx(lambda: runners.run(run_candidate, cand_feeds), "candidate", candidate_path) \
        if not candidate_path.endswith((".engine", ".plan", ".trt")) else runners.run(run_candidate, cand_feeds)
    _check_finite(ref_results, [n for n, _ in frames], "reference", reference_path)
    tol = tolerance_for(precision, options.atol, options.rtol, options.floors)
    floors = _noise_floors(reference, ref_feeds) if tol.numeric_decides and tol.noise_floor else None
    names = list(ref_results[0].keys())
    missing = [n for n in names if n not in cand_results[0]]
    if missing:
        raise UsageError(f"candidate {candidate_path} has no output named {', '.join(missing)}; compare models "
                         f"of the same network")
    stats, errors = [], {}
    channels_last = ref_feed.channel_axis == 3  # an NHWC model's 4-D outputs are NHWC too (tf2onnx)
    for name in names:
        refs = [channels_first(r[name], channels_last) for r in ref_results]
        gots = [channels_first(c[name], channels_last) for c in cand_results]
        s = output_stats(name, refs, gots, options.map_threshold,
                         floors=[f[name] for f in floors] if floors and name in floors[0] else None)
        stats.append(tol.judge(s))
        if np.ndim(refs[0]) == 4 and s.max_abs != float("inf"):  # frames of the first frame's size (a dynamic
            same = [(r, g) for r, g in zip(refs, gots) if np.shape(r) == np.shape(refs[0])]  # model takes many)
            errors[name] = np.max([np.abs(np.asarray(r, np.float64) - g).max(axis=(0, 1)) for r, g in same], axis=0)
    # Polygraphy's check takes one limit per output: the largest a frame is allowed (the per-frame verdict is ours)
    limits = {s.name: max(verdict.allowed(tol.numeric_limit(s), f) for f in (s.frame_floor if tol.noise_floor else ())
                          or (0.0,))
              if tol.numeric_decides_for(s) else float("inf") for s in stats}
    poly_ok = runners.polygraphy_verdict(ref_results, cand_results, limits)
    return Comparison(reference_path, candidate_path, precision, tuple(n for n, _ in frames), (ref_feed, feed), tol,
                      tuple(stats), poly_ok, errors)


def _noise_floors(reference: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, float]]:
    """Per frame, per output: how far the reference itself moves under +-1 ulp of its first conv's input."""
    probe = verdict.NoiseProbe(reference)
    out = []
    for feed in feeds:
        measured = probe.run(feed)
        out.append(dict(zip(probe.names, measured.floors)))
    return out


def _check_shapes(model: onnx.ModelProto, path: str, role: str, feed: dict[str, np.ndarray]) -> None:
    """Every fed tensor fits the model's declared input (rank, static sizes, type), before anything runs."""
    declared = {vi.name: vi.type.tensor_type for vi in model.graph.input}
    for name, value in feed.items():
        t = declared.get(name)
        if t is None:  # the candidate's metadata names the input of the original it was folded from
            inputs = ", ".join(f"'{n}'" for n in declared) or "none"
            raise UsageError(f"{role} {path} has no input '{name}' (its inputs: {inputs}): the candidate was folded "
                             f"from another model; compare it with the original it was folded from")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]  # -1: dynamic
        if len(dims) != value.ndim or any(d is not None and d != v for d, v in zip(dims, value.shape)):
            want = "x".join(str(d) if d is not None else "?" for d in dims)
            raise UsageError(f"{role} {path}: input '{name}' takes shape {want}, the frames for the other model are "
                             f"{'x'.join(map(str, value.shape))}; compare models of the same network and input "
                             f"size (edgefold fold --input-size fixes a dynamic one)")


def _run_onnx(run, role: str, path: str) -> list[dict]:  # noqa: ANN001 - a thunk
    """onnxruntime's own failures (an op it has no kernel for, a malformed graph) as one line on the model."""
    from polygraphy.exception import PolygraphyException

    try:
        return run()
    except Exception as err:  # noqa: BLE001 - onnxruntime's pybind errors have no common base we can import
        ours = isinstance(err, (PolygraphyException, RuntimeError, ValueError))
        if not ours and not type(err).__module__.startswith("onnxruntime"):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UsageError(f"{role} {path}: onnxruntime cannot run it ({first}); compare needs models it runs") from None


def _check_finite(results: list[dict], frames: list[str], role: str, path: str) -> None:
    for frame, result in zip(frames, results):
        for name, value in result.items():
            if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
                raise UsageError(f"{role} {path} gives NaN or inf in output '{name}' on frame '{frame}'; a model with "
                                 f"non-finite outputs cannot be compared - fix its weights")


def _sidecar(engine_path: str) -> dict:
    p = Path(engine_path).with_suffix(".json")
    if not p.is_file():
        return {}
    return Sidecar.read(p).data


def _engine_feed(sidecar: dict, path: str) -> tuple[InputFeed, str, float, dict]:
    if not sidecar.get("input_contract"):
        raise UsageError(f"{path}: no sidecar {Path(path).with_suffix('.json').name} with the input contract; "
                         f"build engines with `edgefold build`")
    info = Sidecar.from_json(sidecar, path)
    c = info.contract
    meta = {Meta.SOURCE_INPUTS: json.dumps(list(info.source_inputs))}
    if info.frontend:
        meta[Meta.FRONTEND] = json.dumps(info.frontend)
    return InputFeed.from_contract(c), c.channel_order, float(c.pixel_range[1]), meta
