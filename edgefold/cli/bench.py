"""``edgefold bench MODEL|ENGINE --baseline ORIGINAL.onnx``: end-to-end latency per camera frame, side by
side with the pipeline users run today (replicate to 3 channels + normalise on the CPU, then the original
model), in one run, rounds interleaved. Frame = raw uint8 gray frame in host memory -> outputs in host
memory."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from edgefold.cli.flags import add_camera_flags, size
from edgefold.core.contract import InputContract, Meta, camera_front_end
from edgefold.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency per camera frame vs the CPU-preprocessing baseline",
                       description=__doc__)
    p.add_argument("model", help="folded .onnx or .engine")
    p.add_argument("--baseline", help="the original model (.onnx, or an .engine of it)")
    add_camera_flags(p)
    p.add_argument("--size", type=size, metavar="HxW", help="frame size for dynamic models (default 2048x2448)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per pipeline (default 20)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    p.add_argument("--batch", type=int, metavar="N",
                   help="several cameras: also time batches of 1, 2, 4 ... N frames (one per camera) and report "
                   "frames per second per camera count")
    p.set_defaults(run=run)


def _engine_baseline_feed(contract: InputContract, raw_channels: int, options):  # noqa: ANN001, ANN202
    from edgefold.compare.feeds import declared_feed
    from edgefold.core.frames import InputFeed

    plain = InputFeed.from_contract(contract)
    return declared_feed(plain, raw_channels, options)


def _conversion(fmt, channels: int):  # noqa: ANN001, ANN202 - a PixelFormat; returns raw (1, H, W) -> (C, H, W)
    """What users run today to get the model's pixels from a camera buffer: OpenCV's cvtColor where it is
    installed (uint8 out, as in their pipelines), else edgefold's float reference of it."""
    try:
        import cv2
    except ImportError:
        return lambda raw: fmt.reference(raw, channels)
    if fmt.mosaic and fmt.bits == 8:
        from edgefold.core.bayer import OPENCV_CODES

        code = getattr(cv2, OPENCV_CODES[fmt.mosaic])
        return lambda raw: cv2.cvtColor(raw[0].astype(np.uint8), code).transpose(2, 0, 1)
    if fmt.chroma and fmt.yuv == "bt601-limited":
        from edgefold.core.yuv import OPENCV_CODES as YUV_CODES

        code = getattr(cv2, YUV_CODES[fmt.chroma])
        if fmt.packed:
            return lambda raw: cv2.cvtColor(raw[0].astype(np.uint8).reshape(raw.shape[1], -1, 2), code).transpose(2, 0, 1)
        return lambda raw: cv2.cvtColor(raw[0].astype(np.uint8), code).transpose(2, 0, 1)
    return lambda raw: fmt.reference(raw, channels)


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 90))


def run(args: argparse.Namespace) -> int:
    from edgefold.compare import CompareOptions, reference_feed
    from edgefold.runtime import Engine

    if args.batch is not None and args.batch < 1:
        from edgefold.errors import UsageError

        raise UsageError("--batch needs a number of cameras >= 1")
    engine = Engine(args.model, threads=args.threads)
    frame_size = engine.contract.static_size() or args.size or (2048, 2448)
    channels = engine.contract.channels
    rng = np.random.default_rng(0)
    top = int(engine.contract.pixel_range[1])
    frame = rng.integers(0, top + 1, frame_size if channels == 1 else (*frame_size, channels))
    frame = frame.astype(np.uint8 if top <= 255 else np.uint16)
    rows = []
    times: dict[str, list[float]] = {"folded": []}
    stages: dict[str, list[float]] = {"baseline preprocess": [], "baseline model": []}
    baseline = feed = None
    convert = lambda raw: raw  # noqa: E731 - a camera format replaces it with its conversion
    if args.baseline:
        from edgefold.graph.io import load_model

        baseline = Engine(args.baseline, threads=args.threads)
        meta = {}
        if not args.baseline.endswith(".engine"):
            folded_meta = load_model(args.model).metadata_props if args.model.endswith(".onnx") else []
            meta = {p.key: p.value for p in folded_meta}
        options = CompareOptions(channels=args.channels, mean=args.mean, std=args.std, scale=args.scale)
        if engine.info is not None and engine.info.frontend:
            meta[Meta.FRONTEND] = json.dumps(engine.info.frontend)
        camera = camera_front_end(meta)
        if camera is not None:  # today: the camera's conversion (OpenCV where installed), then the normalisation
            fmt, inner, sources = camera
            convert = _conversion(fmt, inner)
            feed = reference_feed(load_model(args.baseline), {Meta.SOURCE_INPUTS: json.dumps(sources)}, inner, options)
        elif args.baseline.endswith(".onnx"):
            feed = reference_feed(load_model(args.baseline), meta, channels, options)
        else:  # an engine of the original model: its sidecar contract, the declared preprocessing on the CPU
            feed = _engine_baseline_feed(baseline.contract, channels, options)
        times["baseline"] = []
    raw_chw = frame[None].astype(np.float64) if channels == 1 else np.moveaxis(frame, -1, 0).astype(np.float64)

    def run_baseline() -> None:
        t0 = time.perf_counter()
        x = feed.tensor(convert(raw_chw))  # type: ignore[union-attr]
        t1 = time.perf_counter()
        baseline.run(x)  # type: ignore[union-attr]
        t2 = time.perf_counter()
        stages["baseline preprocess"].append(1e3 * (t1 - t0))
        stages["baseline model"].append(1e3 * (t2 - t1))
        times["baseline"].append(1e3 * (t2 - t0))

    def run_folded() -> None:
        t0 = time.perf_counter()
        engine.infer(frame)
        times["folded"].append(1e3 * (time.perf_counter() - t0))

    for _ in range(args.warmup):
        run_folded()
        if baseline is not None:
            run_baseline()
    for k in times:
        times[k].clear()
    for k in stages:
        stages[k].clear()
    for _ in range(args.frames):  # interleaved: both pipelines see the same machine state
        run_folded()
        if baseline is not None:
            run_baseline()
    shown = engine.contract.pixel_format
    kind = shown.genicam if shown is not None and (not shown.per_pixel or shown.bits > 8) else \
        ("gray uint8" if channels == 1 else f"{channels}-channel uint8")
    print(f"{frame_size[0]}x{frame_size[1]} {kind} frames, "
          f"{args.frames} timed after {args.warmup} warm-up, backend {engine.backend_name}")
    print(f"{'pipeline':32s} {'median ms':>10s} {'p90 ms':>10s}")
    rows.append(("folded (raw uint8 in the model)", *_stats(times["folded"])))
    if baseline is not None:
        rows.append(("baseline: CPU preprocessing", *_stats(stages["baseline preprocess"])))
        rows.append(("baseline: original model", *_stats(stages["baseline model"])))
        rows.append(("baseline: total", *_stats(times["baseline"])))
    for name, med, p90 in rows:
        print(f"{name:32s} {med:10.2f} {p90:10.2f}")
    if baseline is not None:
        ratio = statistics.median(b / f for b, f in zip(times["baseline"], times["folded"]))
        print(f"baseline / folded: {ratio:.2f}x (median of per-frame ratios)")
        baseline.close()
    if args.batch is not None:
        _cameras(engine, frame, args)
    engine.close()
    return EXIT_OK


def camera_counts(n: int) -> list[int]:
    """1, 2, 4, ... up to and including n."""
    counts, c = [], 1
    while c < n:
        counts.append(c)
        c *= 2
    return counts + [n]


def _cameras(engine, frame: np.ndarray, args: argparse.Namespace) -> None:  # noqa: ANN001 - an Engine
    """Frames per second per camera count: one batched call per round, N cameras' frames in it."""
    from edgefold.errors import UsageError

    if args.batch < 1:
        raise UsageError("--batch needs a number of cameras >= 1")
    limit = engine.max_batch
    if limit is not None and args.batch > limit:
        raise UsageError(f"--batch {args.batch}: the model takes at most {limit} frames per call; build it with a "
                         f"batch profile (--shapes NAME:1x.../{args.batch}x.../{args.batch}x...)")
    print(f"{'cameras':>8s} {'median ms':>10s} {'frames/s':>10s} {'per camera':>11s}")
    for count in camera_counts(args.batch):
        batch = [frame] * count
        for _ in range(args.warmup):
            engine.infer(batch)
        ms = []
        for _ in range(args.frames):
            t0 = time.perf_counter()
            engine.infer(batch)
            ms.append(1e3 * (time.perf_counter() - t0))
        med = statistics.median(ms)
        print(f"{count:8d} {med:10.2f} {1e3 * count / med:10.1f} {1e3 / med:11.1f}")
