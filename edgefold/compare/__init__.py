"""``edgefold compare``: a folded model or engine against the original 3-channel graph, with Polygraphy.

The reference is always the original graph in onnxruntime at fp32. Each model gets its own feed built
from the same raw frame (Polygraphy's ``Comparator.run`` would coerce mismatched inputs with only a
warning), the two runs are merged into one ``RunResults``, and Polygraphy's ``SimpleCompareFunc`` gives
the numeric verdict; task-level agreement (top-1, thresholded maps) is added on top.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefold.compare.feeds import (  # noqa: F401 - candidate_feed/reference_feed/detect_precision are API
    candidate_feed,
    comparison_frames,
    detect_precision,
    edgefold_meta,
    more_chains,
    reference_feed,
    side_inputs,
)
from edgefold.compare.frames import InputFeed, synthetic_frames
from edgefold.compare.metrics import OutputStats, output_stats
from edgefold.compare.tolerance import Tolerance, tolerance_for
from edgefold.errors import UsageError
from edgefold.fold.affine import ChannelAffine
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
        head = ("output", "max abs", "max rel", "mean", "p99", "border", "interior", "top-1", "map IoU", "false +",
                "cosine", "")
        rows = []
        for o in self.outputs:
            rows.append((o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", f"{o.mean_abs:.3g}", f"{o.p99_abs:.3g}",
                         _f(o.border_max), _f(o.interior_max), _pct(o.top1_agreement), _pct(o.map_iou),
                         _pct(o.false_positive), _f(o.cosine), "ok" if o.passed else "MISMATCH"))
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        lines = [f"reference {self.reference} (onnxruntime fp32) vs candidate {self.candidate} ({self.precision}), "
                 f"{len(self.frames)} frames"]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                  for r in [head, *rows]]
        lines.append(f"tolerance ({self.precision}): {self.tolerance.describe()}")
        lines.append("PASS" if self.passed else "FAIL: the candidate does not match the original")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def compare(reference_path: str, candidate_path: str, options: CompareOptions | None = None) -> Comparison:
    from edgefold.compare import runners

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
    ref_feed = reference_feed(reference, meta, feed.affine.in_channels, options)
    frames = comparison_frames(options, feed, order, pixel_max)
    ref_feeds = [{ref_feed.name: ref_feed.tensor(f)} for _, f in frames]
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
    ref_results = runners.run(runners.onnx_runner(reference, "reference"), ref_feeds)
    cand_results = runners.run(run_candidate, cand_feeds)
    tol = tolerance_for(precision, options.atol, options.rtol, options.floors)
    names = list(ref_results[0].keys())
    missing = [n for n in names if n not in cand_results[0]]
    if missing:
        raise UsageError(f"candidate {candidate_path} has no output named {', '.join(missing)}; compare models "
                         f"of the same network")
    stats, errors = [], {}
    for name in names:
        refs = [r[name] for r in ref_results]
        gots = [c[name] for c in cand_results]
        s = output_stats(name, refs, gots, options.map_threshold)
        stats.append(tol.judge(s))
        if np.ndim(refs[0]) == 4 and s.max_abs != float("inf"):
            errors[name] = np.max([np.abs(np.asarray(r, np.float64) - g).max(axis=(0, 1)) for r, g in zip(refs, gots)],
                                  axis=0)
    limits = {s.name: tol.numeric_limit(s) if tol.numeric_decides_for(s) else float("inf") for s in stats}
    poly_ok = runners.polygraphy_verdict(ref_results, cand_results, limits)
    return Comparison(reference_path, candidate_path, precision, tuple(n for n, _ in frames), (ref_feed, feed), tol,
                      tuple(stats), poly_ok, errors)


def _sidecar(engine_path: str) -> dict:
    p = Path(engine_path).with_suffix(".json")
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"{p}: not valid JSON ({err})") from None


def _engine_feed(sidecar: dict, path: str) -> tuple[InputFeed, str, float, dict]:
    c = sidecar.get("input_contract")
    if not c:
        raise UsageError(f"{path}: no sidecar {Path(path).with_suffix('.json').name} with the input contract; "
                         f"build engines with `edgefold build`")
    feed = InputFeed(c["name"], c["dtype"], tuple(c["shape"]), int(c["channel_axis"]),
                     ChannelAffine.identity(int(c["channels"])))
    meta = {"edgefold.source_inputs": json.dumps(sidecar.get("source_inputs", []))}
    return feed, c.get("channel_order", "gray"), float(c.get("pixel_range", [0, 255])[1]), meta
