"""``edgefold build``: fold, prepare the precision on the CPU and prove it in onnxruntime, then build.

Artifacts next to NAME.engine: NAME.prepared.onnx (exactly what TensorRT parses), NAME.json (sidecar),
NAME.trtexec.sh (the equivalent trtexec command for the target TensorRT). ``--no-engine`` writes all of
them but the engine - what a user on a laptop does before copying the files to the Jetson.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgefold.build import trt as trt_layer
from edgefold.build.spec import BuildOptions, EnginePlan, plan_engine
from edgefold.compare import candidate_feed, detect_precision
from edgefold.compare.frames import InputFeed, synthetic_frames
from edgefold.compare.metrics import OutputStats
from edgefold.compare.tolerance import tolerance_for
from edgefold.errors import MissingTensorRT, UnsupportedGraph, UsageError, VerificationFailed
from edgefold.graph.io import load_model, save_model
from edgefold.graph.outputs import RunOutputs
from edgefold.graph.shapes import spatial_axes
from edgefold.precision import accuracy
from edgefold.precision.calib import CalibSet, load_calibration

MIN_QDQ_OPSET = 13  # per-channel QuantizeLinear


@dataclass(frozen=True)
class Candidate:
    strategy: str  # "fp32" | "fp16" | "recentre" | "float-first"
    model: onnx.ModelProto
    on_calibration: tuple[OutputStats, ...]
    on_held_out: tuple[OutputStats, ...]

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.on_calibration + self.on_held_out)


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
        lines = [f"prepared {self.sidecar['precision']} model ({c.strategy}) for TensorRT {self.plan.trt_major}.x{reused}"]
        for label, stats in (("calibration", c.on_calibration), ("held-out", c.on_held_out)):
            for s in stats:
                task = "".join([f", top-1 {100 * s.top1_agreement:.1f}%" if s.top1_agreement is not None else "",
                                f", map IoU {100 * s.map_iou:.1f}%" if s.map_iou is not None else ""])
                lines.append(f"  {label:11s} {s.name}: max rel error {s.max_rel:.3g}{task}  "
                             f"{'ok' if s.passed else 'BELOW FLOOR'}")
        for o in self.others:
            lines.append(f"  (also measured {o.strategy}: score {accuracy.score(o.on_held_out or o.on_calibration):.4f}"
                         f" vs {accuracy.score(c.on_held_out or c.on_calibration):.4f} for {c.strategy})")
        lines += [f"wrote {f}" for f in self.files]
        if not self.engine_written:
            lines.append(f"no engine built (--no-engine): on the device run {self.files[-1]} or `edgefold build`")
        return "\n".join(lines)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _meta(model: onnx.ModelProto) -> dict:
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("edgefold.")}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _upgrade_opset(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> onnx.ModelProto:
    """Per-channel Q/DQ needs opset 13: convert, and prove the converted model equal in onnxruntime."""
    if _opset(model) >= MIN_QDQ_OPSET:
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, MIN_QDQ_OPSET)
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise UnsupportedGraph(f"cannot upgrade opset {_opset(model)} to {MIN_QDQ_OPSET} for per-channel Q/DQ: "
                               f"{str(err).splitlines()[0][:200]}") from None
    upgraded.metadata_props.extend([p for p in model.metadata_props if p.key not in
                                    {q.key for q in upgraded.metadata_props}])
    stats = accuracy.measure(model, upgraded, feed, frames[:3], tolerance_for("fp32", {}, {}))
    if not all(s.passed for s in stats):
        raise VerificationFailed(f"opset {_opset(model)} -> {MIN_QDQ_OPSET} conversion changed the outputs "
                                 f"(max rel error {max(s.max_rel for s in stats):.3g}); nothing written")
    return upgraded


def _fold(original: onnx.ModelProto, options: BuildOptions, raw_offset: float) -> onnx.ModelProto:
    from edgefold.fold import fold

    fold_options = options.fold_options
    static = [p for p in options.shapes if p.static and len(p.opt) == 4]
    if static and fold_options.input_size is None:
        dims = original.graph.input[0].type.tensor_type.shape.dim
        h_axis, w_axis = spatial_axes(list(dims)) if len(dims) == 4 else (2, 3)
        fold_options = dataclasses.replace(fold_options, input_size=(static[0].opt[h_axis], static[0].opt[w_axis]))
    folded, _ = fold(original, dataclasses.replace(fold_options, raw_offset=raw_offset))
    return folded


def _frames(options: BuildOptions, feed: InputFeed, pixel_max: float) -> tuple[CalibSet, CalibSet]:
    size = feed.static_size()
    if size is None and options.shapes:
        opt = options.shapes[0].opt
        size = (opt[1], opt[2]) if feed.channel_axis in (3, -1) else (opt[2], opt[3])
    if options.calib:
        channels = feed.affine.in_channels
        return load_calibration(options.calib, channels, size, options.calib_count).split()
    h, w = size or (160, 224)
    frames = synthetic_frames(h, w, feed.affine.in_channels, pixel_max, seed=7)
    kinds = ("random", "black", "white", "edges", "page")
    return CalibSet(kinds[:3], tuple(frames[:3])), CalibSet(kinds[3:], tuple(frames[3:]))


def build(model_path: str, options: BuildOptions) -> BuildResult:
    installed = trt_layer.installed_major()
    if options.engine and installed is None:
        raise MissingTensorRT(f"{trt_layer.INSTALL_HINT}; or pass --no-engine to write the prepared model, "
                              f"sidecar and trtexec script only")
    if options.engine and options.trt_major is not None and installed != options.trt_major:
        raise UsageError(f"--trt-version {options.trt_major}, but TensorRT {installed} is installed; drop the flag "
                         f"or use --no-engine")
    target = options.trt_major or installed or 10
    stem = options.stem
    prepared_path, sidecar_path, script_path = f"{stem}.prepared.onnx", f"{stem}.json", f"{stem}.trtexec.sh"
    outputs = RunOutputs(make_folders=True)  # a missing engines/ folder is created, as trtexec does
    outputs.protect_model(model_path)
    outputs.protect(options.calib, "a calibration frame")
    if options.engine:
        outputs.claim(options.output, "-o")
    outputs.claim_model(prepared_path, "-o (NAME.prepared.onnx)")
    outputs.claim(sidecar_path, "-o (NAME.json)")
    outputs.claim(script_path, "-o (NAME.trtexec.sh)")
    original = load_model(model_path)
    already_folded = "edgefold.folded_convs" in _meta(original)
    fold = options.fold and not already_folded
    fp32 = _fold(original, options, 0.0) if fold else original
    feed, _, pixel_max = candidate_feed(fp32, model_path)
    if any(not isinstance(d, int) for d in feed.shape) and not any(p.name == feed.name for p in options.shapes):
        dims = "x".join(str(d) for d in feed.shape)
        raise UsageError(f"input '{feed.name}' is dynamic ({dims}): TensorRT needs a shape profile; give "
                         f"--shapes {feed.name}:MIN/OPT/MAX (e.g. {feed.name}:1x1x480x640/1x1x1080x1920/1x1x2048x2448), "
                         f"or one size for the fastest exact fold")
    calib, held_out = _frames(options, feed, pixel_max)
    tol = tolerance_for(options.precision, {}, {})

    ref_calib = accuracy.reference_outputs(fp32, feed, list(calib.frames))  # once, for every candidate
    ref_held = accuracy.reference_outputs(fp32, feed, list(held_out.frames))

    def evaluate(strategy: str, model: onnx.ModelProto) -> Candidate:
        return Candidate(strategy, model, accuracy.measure_against(ref_calib, model, feed, list(calib.frames), tol),
                         accuracy.measure_against(ref_held, model, feed, list(held_out.frames), tol))

    key = _cache_key(model_path, options, calib)
    cached = _cached_prepared(options, key)
    candidates: list[Candidate] = []
    if cached is not None:
        candidates.append(evaluate(json.loads(Path(f"{options.stem}.json").read_text())["strategy"], cached))
    elif options.precision == "fp32" or (options.precision == "fp16" and options.fp16_flag):
        candidates.append(evaluate("fp32" if options.precision == "fp32" else "fp16-flag", fp32))
    elif options.precision == "fp16":
        from edgefold.precision.fp16 import to_fp16

        model16, _ = to_fp16(fp32, feed, list(calib.frames) + list(held_out.frames))
        candidates.append(evaluate("fp16", model16))
    else:
        from edgefold.precision.int8 import quantize

        strategies = [options.int8_strategy] if options.int8_strategy != "auto" else ["recentre", "float-first"]
        if not fold:
            strategies = [s for s in strategies if s != "recentre"] or ["float-first"]
        for strategy in strategies:
            if strategy == "recentre":
                try:
                    base = _fold(original, options, -128.0)
                except UnsupportedGraph:
                    if options.int8_strategy == "recentre":
                        raise
                    continue  # e.g. a composed adapter: no re-centred fold; float-first is measured alone
            else:
                base = fp32
            base = _upgrade_opset(base, feed, list(calib.frames))
            q = quantize(base, feed, list(calib.frames), strategy, options.calib_method, options.show_progress)
            candidates.append(evaluate(strategy, q))
    chosen = max(candidates, key=lambda c: (c.passed, accuracy.score(c.on_held_out or c.on_calibration)))
    if not chosen.passed and not options.accept_accuracy_drop:
        worst = min(chosen.on_calibration + chosen.on_held_out, key=lambda s: s.passed)
        raise VerificationFailed(f"{options.precision} model below the accuracy floor ({tol.describe()}): output "
                                 f"'{worst.name}' max rel error {worst.max_rel:.3g}"
                                 + (f", top-1 {worst.top1_agreement:.0%}" if worst.top1_agreement is not None else "")
                                 + (f", map IoU {worst.map_iou:.0%}" if worst.map_iou is not None else "")
                                 + "; nothing written - more calibration frames, --int8-strategy, --fp16, or "
                                   "--accept-accuracy-drop")
    plan = plan_engine(options, Path(prepared_path).name, Path(options.output).name, target)
    sidecar = _sidecar(model_path, options, chosen, plan, calib, held_out, fp32)
    sidecar["cache_key"] = key
    sidecar["reused_calibration"] = cached is not None
    engine_info: dict = {"built": False}
    engine_bytes = None
    if options.engine:
        import tempfile

        # TensorRT parses a file; build from a private copy so a failed build leaves nothing behind
        with tempfile.TemporaryDirectory(prefix="edgefold-build-") as tmp:
            staged = str(Path(tmp) / Path(prepared_path).name)
            save_model(chosen.model, staged)
            build_plan = dataclasses.replace(plan, onnx_path=staged, engine_path=str(Path(options.output).resolve()))
            t0 = time.perf_counter()
            engine_bytes = trt_layer.build_engine(build_plan)
        engine_info = {"built": True, "build_seconds": round(time.perf_counter() - t0, 1),
                       "dla_core": options.dla_core, **trt_layer.device_info()}
    sidecar["engine"] = engine_info
    files = [prepared_path, sidecar_path, script_path]
    with outputs:
        if engine_bytes is not None:
            outputs.stage_bytes(options.output, engine_bytes)
            files.insert(0, options.output)
        outputs.stage_model(prepared_path, chosen.model)
        outputs.stage_text(sidecar_path, json.dumps(sidecar, indent=2, default=_plain))
        outputs.stage_text(script_path, plan.trtexec_script())
    Path(script_path).chmod(0o755)
    return BuildResult(plan, chosen, tuple(c for c in candidates if c is not chosen), sidecar,
                       engine_bytes is not None, tuple(files))


def _cache_key(model_path: str, options: BuildOptions, calib: CalibSet) -> str:
    """What the prepared model depends on: the source, the preparation options and the frames."""
    relevant = {k: getattr(options, k) for k in ("precision", "calib_method", "int8_strategy", "fold", "fp16_flag")}
    relevant["fold_options"] = repr(options.fold_options)
    relevant["shapes"] = repr(options.shapes)
    blob = json.dumps([_sha256(model_path), relevant, calib.digest()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cached_prepared(options: BuildOptions, key: str) -> onnx.ModelProto | None:
    """The prepared model of an earlier build with the same key: a rebuild does not recalibrate."""
    sidecar, prepared = Path(f"{options.stem}.json"), Path(f"{options.stem}.prepared.onnx")
    if not (sidecar.is_file() and prepared.is_file()):
        return None
    try:
        if json.loads(sidecar.read_text()).get("cache_key") != key:
            return None
    except (json.JSONDecodeError, OSError):
        return None
    return load_model(prepared)


def _plain(value):  # noqa: ANN001, ANN202
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def _sidecar(model_path: str, options: BuildOptions, chosen: Candidate, plan: EnginePlan, calib: CalibSet,
             held_out: CalibSet, fp32: onnx.ModelProto) -> dict:
    from edgefold import __version__

    meta = _meta(chosen.model)
    contracts = json.loads(meta.get("edgefold.input_contracts", "[]"))
    outputs = [{"name": o.name, "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)).name,
                "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                          for d in o.type.tensor_type.shape.dim]} for o in chosen.model.graph.output]
    fold_opts = options.fold_options
    return {
        "edgefold_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"path": str(model_path), "sha256": _sha256(model_path)},
        "fold": {"folded_convs": json.loads(meta.get("edgefold.folded_convs", "[]")),
                 "raw_offset": json.loads(meta.get("edgefold.raw_offset", "[0]")),
                 "channels": fold_opts.channels, "mean": fold_opts.mean, "std": fold_opts.std, "scale": fold_opts.scale},
        "precision": options.precision,
        "prepared_precision": detect_precision(chosen.model),
        "strategy": chosen.strategy,
        "calibration": {"source": options.calib, "frames": list(calib.names), "held_out": list(held_out.names),
                        "method": options.calib_method if options.precision == "int8" else None,
                        "digest": calib.digest()},
        "accuracy": {"reference": "fp32 folded model in onnxruntime",
                     "floor": tolerance_for(options.precision, {}, {}).describe(),
                     "passed": chosen.passed, "accepted_drop": bool(options.accept_accuracy_drop and not chosen.passed),
                     "calibration": [s.to_json() for s in chosen.on_calibration],
                     "held_out": [s.to_json() for s in chosen.on_held_out]},
        "input_contract": contracts[0] if contracts else candidate_feed(fp32, model_path)[0].to_json(),
        "source_inputs": json.loads(meta.get("edgefold.source_inputs", "[]")),
        "outputs": outputs,
        "build_plan": plan.to_json(),
        "trtexec": Path(options.stem).name + ".trtexec.sh",
    }
