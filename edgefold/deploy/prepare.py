"""Step 1 of a build: the CPU side before any precision is chosen - the fold, the calibration and held-out
frames, the floor, and the fp32 outputs every candidate is measured against."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgefold.compare.feeds import candidate_feed
from edgefold.compare.tolerance import Tolerance, tolerance_for
from edgefold.core.contract import Meta, PixelFormat, pixel_format, read_meta
from edgefold.core.frames import InputFeed, synthetic_frames
from edgefold.deploy.candidate import Candidate
from edgefold.deploy.spec import BuildOptions, ShapeProfile
from edgefold.errors import UsageError
from edgefold.folding.report import Report
from edgefold.graph.io import load_model
from edgefold.graph.shapes import spatial_axes
from edgefold.precision import accuracy
from edgefold.precision.calib import CalibSet, load_calibration


@dataclass
class Prepared:
    """The original, its fp32 fold, the input feed, the calibration and held-out frames, the floor, and the
    fp32 outputs every candidate is measured against."""

    original: onnx.ModelProto
    fp32: onnx.ModelProto
    folded_here: bool  # the fold ran in this build (an already folded model is taken as it is)
    fold_report: Report | None  # the fold's report where it ran here
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
    fp32, report = fold_for_build(original, options, 0.0) if folded_here else (original, None)
    if options.report and report is None:
        raise UsageError("--report: the model is already folded, so this build writes no fold report; drop --report")
    feed, _, pixel_max = candidate_feed(fp32, model_path)
    if any(not isinstance(d, int) for d in feed.shape) and not any(p.name == feed.name for p in options.shapes):
        dims = "x".join(str(d) if isinstance(d, int) else "?" for d in feed.shape)
        raise UsageError(f"input '{feed.name}' is dynamic ({dims}): TensorRT needs a shape profile; give "
                         f"--shapes {feed.name}:MIN/OPT/MAX (e.g. {feed.name}:{example_profile(feed)}), "
                         f"or one size for the fastest exact fold")
    _check_profiles(feed, options.shapes)
    calib, held_out = _frames(options, feed, pixel_max)
    tol = tolerance_for(options.precision, {}, {}, options.accuracy_floor)
    return Prepared(original, fp32, folded_here, report, feed, calib, held_out, tol,
                    accuracy.reference_outputs(fp32, feed, list(calib.frames)),  # once, for every candidate
                    accuracy.reference_outputs(fp32, feed, list(held_out.frames)))


def example_profile(feed: InputFeed) -> str:
    """A MIN/OPT/MAX example in the input's own layout (NCHW, NHWC, or N x H x W): camera sizes where H x W is
    dynamic, else the model's own H x W with a batch of 1 to 4 cameras."""
    channels = feed.affine.in_channels
    nhwc = len(feed.shape) == 4 and feed.channel_axis in (3, -1)
    spatial = feed.shape[1:3] if len(feed.shape) == 3 or nhwc else feed.shape[2:4]

    def one(n: int, h: int, w: int) -> str:
        dims = [n, h, w]
        if len(feed.shape) == 4:
            dims.insert(3 if nhwc else 1, channels)
        return "x".join(map(str, dims))
    if all(isinstance(d, int) for d in spatial):
        h, w = (int(d) for d in spatial)
        return "/".join(one(n, h, w) for n in (1, 1, 4))
    return "/".join(one(1, h, w) for h, w in ((480, 640), (1080, 1920), (2048, 2448)))


def fold_for_build(original: onnx.ModelProto, options: BuildOptions, raw_offset: float
                   ) -> tuple[onnx.ModelProto, Report]:
    """(folded model, fold report): the fold as ``edgefold fold`` does it, for the build's input - nvinfer's
    float pixels, the size a shape profile fixes, a camera format's front end."""
    from edgefold.folding import fold

    fold_options = options.fold_options
    if options.deepstream:  # nvinfer hands the engine float32 planar pixels 0..255
        fold_options = dataclasses.replace(fold_options, input_dtype="float32")
    size = _profile_size(original, options)
    if size is not None and fold_options.input_size is None:
        fold_options = dataclasses.replace(fold_options, input_size=size)
    fmt = camera_format(options)
    if fmt is not None:  # the model folds for float32 pixels in the 8-bit range; the camera's front end goes before
        fold_options = dataclasses.replace(fold_options, input_dtype="float32", channels=fmt.fold_order,
                                           camera=fmt.genicam)
    folded, report = fold(original, dataclasses.replace(fold_options, raw_offset=raw_offset))
    if fmt is not None:  # checked against the float reference conversion, as fold does
        from edgefold.frontend.pixels import attach_checked

        folded, _ = attach_checked(folded, fmt, fold_options.verify, fold_options.verify_sizes, original)
    return folded, report


def _profile_size(original: onnx.ModelProto, options: BuildOptions) -> tuple[int, int] | None:
    """H x W where the shape profiles fix them - every camera the same resolution, only the batch varying
    (1x1x480x640/4x1x480x640/8x1x480x640): the fold then takes the static border scheme."""
    dims = original.graph.input[0].type.tensor_type.shape.dim
    h_axis, w_axis = spatial_axes(list(dims)) if len(dims) == 4 else (2, 3)
    for p in options.shapes:
        if len(p.opt) == 4 and all(p.min[a] == p.opt[a] == p.max[a] for a in (h_axis, w_axis)):
            return p.opt[h_axis], p.opt[w_axis]
    return None


def camera_format(options: BuildOptions) -> PixelFormat | None:
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


def _check_profiles(feed: InputFeed, profiles: tuple[ShapeProfile, ...]) -> None:
    """A batch profile needs a dynamic batch: TensorRT refuses 1/4/8 for a fixed batch of 1 - on the device, after
    calibration. (Spatial axes are the image's; a camera format's buffer size is derived from them later.)"""
    batch = feed.shape[0] if feed.shape else None
    for p in (p for p in profiles if p.name == feed.name):
        asked = {p.min[0], p.opt[0], p.max[0]}
        if isinstance(batch, int) and asked != {batch}:
            raise UsageError(f"--shapes {p.name}: the batch is fixed at {batch} in the model, the profile asks "
                             f"{min(asked)}..{max(asked)}; give {batch} there, or export the model with a dynamic "
                             f"batch for several cameras")
