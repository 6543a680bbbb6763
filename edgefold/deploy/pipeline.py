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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgefold.backends import trt as trt_backend
from edgefold.compare import detect_precision
from edgefold.compare.feeds import candidate_contract, candidate_feed
from edgefold.compare.tolerance import Tolerance, tolerance_for
from edgefold.core.contract import SIDECAR_VERSION, InputContract, Meta, PixelFormat, Sidecar, pixel_format, read_meta
from edgefold.core.frames import InputFeed, synthetic_frames
from edgefold.core.jsonable import plain
from edgefold.core.metrics import OutputStats
from edgefold.deploy import deepstream, triton
from edgefold.deploy import trt as trt_layer
from edgefold.deploy.spec import BuildOptions, EnginePlan, plan_engine
from edgefold.errors import MissingTensorRT, UnsupportedGraph, UsageError, VerificationFailed
from edgefold.graph.index import opset_of
from edgefold.graph.io import load_model, save_model
from edgefold.graph.outputs import RunOutputs
from edgefold.graph.shapes import spatial_axes
from edgefold.precision import accuracy
from edgefold.precision.calib import CalibSet, load_calibration
from edgefold.precision.mixed import SearchResult

MIN_QDQ_OPSET = 13  # per-channel QuantizeLinear
AUTO_CALIB_METHODS = ("percentile", "minmax")  # --calib-method auto: both measured, the better one kept
SENSITIVITY_FRAMES = 3  # calibration frames the per-layer sensitivity is measured on


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
                lines.append(f"  {label:11s} {s.name}: {_figures(s)}  {'ok' if s.passed else 'BELOW FLOOR'}"
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


def _example_profile(feed: InputFeed) -> str:
    """A MIN/OPT/MAX example in the input's own layout (NCHW, NHWC, or N x H x W)."""
    channels = feed.affine.in_channels

    def one(h: int, w: int) -> str:
        dims = [1, h, w]
        if len(feed.shape) == 4:
            dims.insert(3 if feed.channel_axis in (3, -1) else 1, channels)
        return "x".join(map(str, dims))
    return "/".join(one(h, w) for h, w in ((480, 640), (1080, 1920), (2048, 2448)))


def _figures(s: OutputStats) -> str:
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


def _below_floor(options: BuildOptions, tol: Tolerance, chosen: Candidate) -> str:
    """One line: the floor, the best figure reached and what to try next."""
    failing = [s for s in chosen.on_calibration + chosen.on_held_out if not s.passed]
    worst = failing[0] if failing else (chosen.on_calibration + chosen.on_held_out)[0]
    search = chosen.search
    kept = "" if search is None else (
        f" with {len(search.kept_float)} layers in FP16" if search.kept_float else
        f" with INT8 everywhere; the FP16-layer search tried {', '.join(str(k) for k, _ in search.steps) or 'nothing'}"
        f" of {len(search.ranking)} layers in FP16{' before --search-budget ran out' if search.exhausted else ''}")
    hint = ("more calibration frames like the camera's, a lower --accuracy-floor, --search-budget, --fp16, or "
            "--accept-accuracy-drop") if options.precision == "int8" else "--fp32, or --accept-accuracy-drop"
    return (f"{options.precision} model below the accuracy floor ({tol.describe()}): best reached ({chosen.label}"
            f"{kept}): output '{worst.name}' {_figures(worst)} - {worst.decided_by}; nothing written - try {hint}")


def _int8_candidates(original: onnx.ModelProto, options: BuildOptions, fp32: onnx.ModelProto, feed: InputFeed,
                     calib: CalibSet, fold: bool, evaluate) -> list[Candidate]:  # noqa: ANN001
    """Every first-conv strategy x calibrator asked for, each quantised and measured."""
    from edgefold.precision.int8 import quantize

    strategies = [options.int8_strategy] if options.int8_strategy != "auto" else ["recentre", "float-first"]
    if not fold:
        strategies = [s for s in strategies if s != "recentre"] or ["float-first"]
    methods = AUTO_CALIB_METHODS if options.calib_method == "auto" else (options.calib_method,)
    out = []
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
        for method in methods:
            q = quantize(base, feed, list(calib.frames), strategy, method, options.show_progress)
            out.append(dataclasses.replace(evaluate(strategy, q), calib_method=method))
    return out


def _mixed_precision(chosen: Candidate, feed: InputFeed, calib: CalibSet, ref_calib, evaluate,  # noqa: ANN001
                     options: BuildOptions) -> Candidate:
    """Keep the fewest most sensitive layers in float so the floor holds (precision/mixed.py)."""
    from edgefold.backends.ort import session
    from edgefold.precision import mixed

    deadline = time.monotonic() + options.search_budget_s
    probe = list(calib.frames)[:SENSITIVITY_FRAMES]

    def run(model: onnx.ModelProto) -> list[list[np.ndarray]]:
        s = session(model, optimize=True)
        names = [o.name for o in s.get_outputs()]
        return [s.run(names, {feed.name: feed.tensor(f)}) for f in probe]

    ranking = mixed.rank_layers(chosen.model, run, ref_calib[1][: len(probe)], deadline, options.show_progress)
    found: dict[int, Candidate] = {}

    def passes(model: onnx.ModelProto) -> bool:
        c = dataclasses.replace(evaluate(chosen.strategy, model), calib_method=chosen.calib_method)
        found[id(model)] = c
        return c.passed

    model, info = mixed.search(chosen.model, ranking, passes, deadline, options.show_progress)
    return dataclasses.replace(chosen if model is None else found[id(model)], search=info)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _upgrade_opset(model: onnx.ModelProto, feed: InputFeed, frames: list[np.ndarray]) -> onnx.ModelProto:
    """Per-channel Q/DQ needs opset 13: convert, and prove the converted model equal in onnxruntime."""
    if opset_of(model) >= MIN_QDQ_OPSET:
        return model
    try:
        upgraded = onnx.version_converter.convert_version(model, MIN_QDQ_OPSET)
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise UnsupportedGraph(f"cannot upgrade opset {opset_of(model)} to {MIN_QDQ_OPSET} for per-channel Q/DQ: "
                               f"{str(err).splitlines()[0][:200]}") from None
    upgraded.metadata_props.extend([p for p in model.metadata_props if p.key not in
                                    {q.key for q in upgraded.metadata_props}])
    stats = accuracy.measure(model, upgraded, feed, frames[:3], tolerance_for("fp32", {}, {}))
    if not all(s.passed for s in stats):
        raise VerificationFailed(f"opset {opset_of(model)} -> {MIN_QDQ_OPSET} conversion changed the outputs "
                                 f"(max rel error {max(s.max_rel for s in stats):.3g}); nothing written")
    return upgraded


def _fold(original: onnx.ModelProto, options: BuildOptions, raw_offset: float) -> onnx.ModelProto:
    from edgefold.folding import fold

    fold_options = options.fold_options
    if options.deepstream:  # nvinfer hands the engine float32 planar pixels 0..255
        fold_options = dataclasses.replace(fold_options, input_dtype="float32")
    static = [p for p in options.shapes if p.static and len(p.opt) == 4]
    if static and fold_options.input_size is None:
        dims = original.graph.input[0].type.tensor_type.shape.dim
        h_axis, w_axis = spatial_axes(list(dims)) if len(dims) == 4 else (2, 3)
        fold_options = dataclasses.replace(fold_options, input_size=(static[0].opt[h_axis], static[0].opt[w_axis]))
    fmt = _camera_format(options)
    if fmt is not None:  # the model folds for float32 pixels in the 8-bit range; the camera's front end goes before
        fold_options = dataclasses.replace(fold_options, input_dtype="float32", channels=fmt.fold_order,
                                           camera=fmt.genicam)
    folded, _ = fold(original, dataclasses.replace(fold_options, raw_offset=raw_offset))
    if fmt is not None:  # checked against the float reference conversion, as fold does
        from edgefold.frontend.pixels import attach_checked

        folded, _ = attach_checked(folded, fmt, fold_options.verify, fold_options.verify_sizes)
    return folded


def _camera_format(options: BuildOptions) -> PixelFormat | None:
    if options.pixel_format is None:
        return None
    fmt = pixel_format(options.pixel_format)
    if fmt.chroma:
        fmt = dataclasses.replace(fmt, yuv=options.yuv)
    if fmt.bits == 8 and fmt.per_pixel:
        raise UsageError(f"--pixel-format {fmt.genicam} is the ordinary fold: use --{fmt.name}")
    if fmt.bits > 8 and options.calib and Path(options.calib).is_dir():
        raise UsageError(f"--pixel-format {fmt.genicam}: image files hold 8 bits; give --calib as an .npy stack of "
                         f"raw frames (N, H, W) with the camera's values")
    return fmt


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


@dataclass
class Prepared:
    """The CPU side of a build, before any precision is chosen: the original, its fp32 fold, the input feed, the
    calibration and held-out frames, the floor, and the fp32 outputs every candidate is measured against."""

    original: onnx.ModelProto
    fp32: onnx.ModelProto
    folded_here: bool  # the fold ran in this build (an already folded model is taken as it is)
    feed: InputFeed
    calib: CalibSet
    held_out: CalibSet
    tol: Tolerance
    ref_calib: tuple  # (output names, per-frame outputs) of the fp32 model
    ref_held: tuple

    def evaluate(self, strategy: str, model: onnx.ModelProto) -> Candidate:
        frames_c, frames_h = list(self.calib.frames), list(self.held_out.frames)
        return Candidate(strategy, model,
                         accuracy.measure_against(self.ref_calib, model, self.feed, frames_c, self.tol),
                         accuracy.measure_against(self.ref_held, model, self.feed, frames_h, self.tol))


def prepare(model_path: str, options: BuildOptions) -> Prepared:
    original = load_model(model_path)
    folded_here = options.fold and Meta.FOLDED_CONVS not in read_meta(original)
    fp32 = _fold(original, options, 0.0) if folded_here else original
    feed, _, pixel_max = candidate_feed(fp32, model_path)
    if any(not isinstance(d, int) for d in feed.shape) and not any(p.name == feed.name for p in options.shapes):
        dims = "x".join(str(d) for d in feed.shape)
        raise UsageError(f"input '{feed.name}' is dynamic ({dims}): TensorRT needs a shape profile; give "
                         f"--shapes {feed.name}:MIN/OPT/MAX (e.g. {feed.name}:{_example_profile(feed)}), "
                         f"or one size for the fastest exact fold")
    _check_profiles(feed, options.shapes)
    calib, held_out = _frames(options, feed, pixel_max)
    tol = tolerance_for(options.precision, {}, {}, options.accuracy_floor)
    return Prepared(original, fp32, folded_here, feed, calib, held_out, tol,
                    accuracy.reference_outputs(fp32, feed, list(calib.frames)),  # once, for every candidate
                    accuracy.reference_outputs(fp32, feed, list(held_out.frames)))


def _check_profiles(feed: InputFeed, profiles) -> None:  # noqa: ANN001 - ShapeProfile tuple
    """A batch profile needs a dynamic batch: TensorRT refuses 1/4/8 for a fixed batch of 1 - on the device, after
    calibration. (Spatial axes are the image's; a camera format's buffer size is derived from them later.)"""
    batch = feed.shape[0] if feed.shape else None
    for p in (p for p in profiles if p.name == feed.name):
        asked = {p.min[0], p.opt[0], p.max[0]}
        if isinstance(batch, int) and asked != {batch}:
            raise UsageError(f"--shapes {p.name}: the batch is fixed at {batch} in the model, the profile asks "
                             f"{min(asked)}..{max(asked)}; give {batch} there, or export the model with a dynamic "
                             f"batch for several cameras")


def _fp32(prep: Prepared, options: BuildOptions) -> list[Candidate]:
    return [prep.evaluate("fp32", prep.fp32)]


def _fp16_flag(prep: Prepared, options: BuildOptions) -> list[Candidate]:
    """TensorRT <= 10: the fp32 ONNX and the FP16 builder flag (measured as fp32 here)."""
    return [prep.evaluate("fp16-flag", prep.fp32)]


def _fp16(prep: Prepared, options: BuildOptions) -> list[Candidate]:
    from edgefold.precision.fp16 import to_fp16

    model16, _ = to_fp16(prep.fp32, prep.feed, list(prep.calib.frames) + list(prep.held_out.frames))
    return [prep.evaluate("fp16", model16)]


def _int8(prep: Prepared, options: BuildOptions) -> list[Candidate]:
    return _int8_candidates(prep.original, options, prep.fp32, prep.feed, prep.calib, prep.folded_here,
                            prep.evaluate)


# how each precision makes its candidates; a new one is a function of (Prepared, BuildOptions) and a line here
STRATEGIES: dict[str, Callable[[Prepared, BuildOptions], list[Candidate]]] = {
    "fp32": _fp32, "fp16-flag": _fp16_flag, "fp16": _fp16, "int8": _int8,
}


def choose(prep: Prepared, options: BuildOptions, key: str) -> tuple[Candidate, list[Candidate], bool]:
    """(chosen, every candidate, whether the previous build's calibrated model was reused)."""
    cached = _cached_prepared(options, key)
    if cached is not None:
        candidates = [_reused(json.loads(Path(f"{options.stem}.json").read_text()), prep.evaluate, cached)]
    else:
        name = "fp16-flag" if options.precision == "fp16" and options.fp16_flag else options.precision
        candidates = STRATEGIES[name](prep, options)
    chosen = max(candidates, key=lambda c: (c.passed, accuracy.score(c.on_held_out or c.on_calibration)))
    if options.precision == "int8" and not chosen.passed and cached is None and options.mixed_precision:
        chosen = _mixed_precision(chosen, prep.feed, prep.calib, prep.ref_calib, prep.evaluate, options)
    if not chosen.passed and not options.accept_accuracy_drop:
        raise VerificationFailed(_below_floor(options, prep.tol, chosen))
    return chosen, candidates, cached is not None


def _tensorrt_target(options: BuildOptions) -> int:
    """The TensorRT major to plan for; a missing or different TensorRT is refused before any work."""
    installed = trt_backend.installed_major()
    if options.engine and installed is None:
        raise MissingTensorRT(f"{trt_backend.INSTALL_HINT}; or pass --no-engine to write the prepared model, "
                              f"sidecar and trtexec script only")
    if options.engine and options.trt_major is not None and installed != options.trt_major:
        raise UsageError(f"--trt-version {options.trt_major}, but TensorRT {installed} is installed; drop the flag "
                         f"or use --no-engine")
    return options.trt_major or installed or 10


def _engine(options: BuildOptions, plan: EnginePlan, model: onnx.ModelProto) -> tuple[bytes | None, dict]:
    """The TensorRT build (only with TensorRT): engine bytes and what the sidecar records about it."""
    if not options.engine:
        return None, {"built": False}
    import tempfile

    # TensorRT parses a file; build from a private copy so a failed build leaves nothing behind
    with tempfile.TemporaryDirectory(prefix="edgefold-build-") as tmp:
        staged = str(Path(tmp) / plan.onnx_path)
        save_model(model, staged)
        build_plan = dataclasses.replace(plan, onnx_path=staged, engine_path=str(Path(options.output).resolve()))
        t0 = time.perf_counter()
        engine_bytes = trt_layer.build_engine(build_plan)
    return engine_bytes, {"built": True, "build_seconds": round(time.perf_counter() - t0, 1),
                          "dla_core": options.dla_core, **trt_backend.device_info()}


def build(model_path: str, options: BuildOptions) -> BuildResult:
    """prepare (fold, frames, fp32 reference) -> choose (the precision's strategies, the floor) -> the TensorRT
    target (engine, trtexec script) and the deployment files -> every output written together."""
    target = _tensorrt_target(options)
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
    targets = _claim_targets(outputs, options)

    prep = prepare(model_path, options)
    key = _cache_key(model_path, options, prep.calib)
    chosen, candidates, reused = choose(prep, options, key)

    plan = plan_engine(options, Path(prepared_path).name, Path(options.output).name, target)
    sidecar = _sidecar(model_path, options, chosen, plan, prep.calib, prep.held_out, prep.fp32)
    sidecar["cache_key"] = key
    sidecar["reused_calibration"] = reused
    engine_bytes, sidecar["engine"] = _engine(options, plan, chosen.model)
    target_files = _target_files(options, sidecar, targets, engine_bytes, prep.fp32)
    Sidecar.from_json(sidecar, sidecar_path)  # what every reader takes it as: a broken sidecar is never written
    files = [prepared_path, sidecar_path, script_path]
    with outputs:
        if engine_bytes is not None:
            outputs.stage_bytes(options.output, engine_bytes)
            files.insert(0, options.output)
        outputs.stage_model(prepared_path, chosen.model)
        outputs.stage_text(sidecar_path, json.dumps(sidecar, indent=2, default=plain))
        outputs.stage_text(script_path, plan.trtexec_script() + _script_notes(sidecar))
        for path, content in target_files:
            if isinstance(content, onnx.ModelProto):
                outputs.stage_model(path, content)
            else:
                outputs.stage_bytes(path, content)
            files.append(path)
    Path(script_path).chmod(0o755)
    return BuildResult(plan, chosen, tuple(c for c in candidates if c is not chosen), sidecar,
                       engine_bytes is not None, tuple(files))


def _claim_targets(outputs: RunOutputs, options: BuildOptions) -> dict[str, str]:
    """The deployment files of --deepstream / --triton, claimed before any work (the Triton schema is loaded
    now, so a missing tritonclient is a one-line error before the build, not after)."""
    stem = Path(options.stem)
    paths: dict[str, str] = {}
    if options.deepstream:
        paths["nvinfer"] = str(stem.parent / deepstream.config_name(str(stem)))
    if options.triton_repo:
        triton.schema()
        root = Path(options.triton_repo) / stem.name
        paths.update(triton_config=str(root / "config.pbtxt"), triton_sidecar=str(root / triton.SIDECAR))
        if options.engine:
            paths["triton_plan"] = str(root / "1" / "model.plan")
        if options.triton_onnx:
            onnx_root = Path(options.triton_repo) / f"{stem.name}_onnx"
            paths.update(onnx_config=str(onnx_root / "config.pbtxt"), onnx_sidecar=str(onnx_root / triton.SIDECAR),
                         onnx_model=str(onnx_root / "1" / "model.onnx"))
    for key, path in paths.items():
        if key == "onnx_model":
            outputs.claim_model(path, "--triton-onnx")
        else:
            outputs.claim(path, "--deepstream" if key == "nvinfer" else "--triton")
    return paths


def _target_files(options: BuildOptions, sidecar: dict, paths: dict[str, str], engine_bytes: bytes | None,
                  fp32: onnx.ModelProto) -> list[tuple[str, bytes | onnx.ModelProto]]:
    """(path, content) of every deployment file; the sidecar records what was written for which target."""
    out: list[tuple[str, bytes | onnx.ModelProto]] = []
    stem = Path(options.stem)
    if options.deepstream:
        contract = InputContract.from_json(sidecar["input_contract"])
        deepstream.check_contract(contract)
        sidecar["deepstream"] = {"config": Path(paths["nvinfer"]).name,
                                 "model-color-format": deepstream.COLOR_FORMAT[contract.channel_order],
                                 "input": "float32 raw pixels 0..255, planar NCHW (what nvinfer feeds)"}
    if options.triton_repo:
        sidecar["triton"] = {"repository": str(options.triton_repo), "model": stem.name,
                             "onnx_twin": f"{stem.name}_onnx" if options.triton_onnx else None}
    if options.deepstream:
        text = deepstream.nvinfer_config(sidecar, Path(options.output).name, Path(f"{stem}.prepared.onnx").name)
        out.append((paths["nvinfer"], text.encode()))
    if options.triton_repo:
        side_text = json.dumps(sidecar, indent=2, default=plain).encode()
        out.append((paths["triton_config"], triton.config_text(triton.model_config(sidecar, stem.name)).encode()))
        out.append((paths["triton_sidecar"], side_text))
        if engine_bytes is not None:
            out.append((paths["triton_plan"], engine_bytes))
        if options.triton_onnx:
            twin = triton.model_config(sidecar, f"{stem.name}_onnx", platform="onnxruntime_onnx")
            out.append((paths["onnx_config"], triton.config_text(twin).encode()))
            out.append((paths["onnx_sidecar"], side_text))
            out.append((paths["onnx_model"], fp32))
    return out


def _reused(previous: dict, evaluate, model: onnx.ModelProto) -> Candidate:  # noqa: ANN001
    """The previous build's prepared model, measured again, with what its sidecar says about how it was made."""
    from edgefold.precision.mixed import SearchResult

    int8 = previous.get("int8") or {}
    search = int8.get("search") or {}
    found = None if not int8.get("kept_float") else SearchResult(
        tuple(int8["kept_float"]), tuple((n, float(v)) for n, v in search.get("sensitivity", [])),
        tuple((int(k), bool(ok)) for k, ok in search.get("steps", [])), float(search.get("seconds", 0.0)),
        bool(search.get("exhausted", False)))
    return dataclasses.replace(evaluate(previous["strategy"], model), search=found,
                               calib_method=(previous.get("calibration") or {}).get("method"))


def _cache_key(model_path: str, options: BuildOptions, calib: CalibSet) -> str:
    """What the prepared model depends on: the source, the preparation options (the floor and the search
    decide which layers stay in FP16) and the frames."""
    relevant = {k: getattr(options, k) for k in ("precision", "calib_method", "int8_strategy", "fold", "fp16_flag",
                                                 "accuracy_floor", "mixed_precision", "search_budget_s",
                                                 "pixel_format", "yuv", "deepstream")}  # these change its input
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




def _int8_summary(chosen: Candidate, calib: CalibSet) -> dict:
    """What the INT8 model quantises: its share of the MACs, the layers kept in float, how they were found."""
    from edgefold.precision.mixed import int8_mac_share

    kept = list(chosen.search.kept_float) if chosen.search else []
    h, w = np.shape(calib.frames[0])[-2:] if calib.frames else (0, 0)
    try:
        share = int8_mac_share(chosen.model, (int(h), int(w)) if calib.frames else None)
    except Exception:  # noqa: BLE001 - the share is information; a model inspect cannot count still builds
        share = None
    search = chosen.search
    return {"kept_float": kept, "int8_mac_share": share,
            "search": None if search is None else {
                "steps": [list(step) for step in search.steps], "seconds": round(search.seconds, 1),
                "exhausted": search.exhausted,
                "sensitivity": [[n, v] for n, v in search.ranking[:20]]}}


def _script_notes(sidecar: dict) -> str:
    int8 = sidecar.get("int8") or {}
    if not int8.get("kept_float"):
        return ""
    return ("# Mixed precision is in the Q/DQ placement of the ONNX itself: these layers have no Q/DQ and run in\n"
            "# FP16 on TensorRT 10 (the FP16 flag is set with INT8) - no --layerPrecisions needed:\n"
            + "".join(f"#   {name}\n" for name in int8["kept_float"]))


def _sidecar(model_path: str, options: BuildOptions, chosen: Candidate, plan: EnginePlan, calib: CalibSet,
             held_out: CalibSet, fp32: onnx.ModelProto) -> dict:
    from edgefold.version import __version__

    meta = read_meta(chosen.model)
    outputs = [{"name": o.name, "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type)).name,
                "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                          for d in o.type.tensor_type.shape.dim]} for o in chosen.model.graph.output]
    fold_opts = options.fold_options
    return {
        "sidecar_version": SIDECAR_VERSION,
        "edgefold_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {"path": str(model_path), "sha256": _sha256(model_path)},
        "fold": {"folded_convs": json.loads(meta.get(Meta.FOLDED_CONVS, "[]")),
                 "raw_offset": json.loads(meta.get(Meta.RAW_OFFSET, "[0]")),
                 "channels": fold_opts.channels, "mean": fold_opts.mean, "std": fold_opts.std, "scale": fold_opts.scale},
        "precision": options.precision,
        "prepared_precision": detect_precision(chosen.model),
        "strategy": chosen.strategy,
        "calibration": {"source": options.calib, "frames": list(calib.names), "held_out": list(held_out.names),
                        "method": chosen.calib_method if options.precision == "int8" else None,
                        "digest": calib.digest()},
        "accuracy": {"reference": "fp32 folded model in onnxruntime",
                     "floor": tolerance_for(options.precision, {}, {}, options.accuracy_floor).describe(),
                     "passed": chosen.passed, "accepted_drop": bool(options.accept_accuracy_drop and not chosen.passed),
                     "calibration": [s.to_json() for s in chosen.on_calibration],
                     "held_out": [s.to_json() for s in chosen.on_held_out]},
        "int8": _int8_summary(chosen, calib) if options.precision == "int8" else None,
        # the full contract also for --no-fold (the model's own input as it is): Engine and the C++ app read it
        "input_contract": candidate_contract(chosen.model, model_path).to_json(),
        "source_inputs": json.loads(meta.get(Meta.SOURCE_INPUTS, "[]")),
        "frontend": json.loads(meta[Meta.FRONTEND]) if Meta.FRONTEND in meta else None,
        "outputs": outputs,
        "build_plan": plan.to_json(),
        "trtexec": Path(options.stem).name + ".trtexec.sh",
    }
