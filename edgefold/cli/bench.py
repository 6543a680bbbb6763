"""``edgefold bench MODEL|ENGINE --baseline ORIGINAL``: end-to-end latency per camera frame, side by side with
what users run today - the original model fed as it is fed today - in one process, by the same runtime with
the same session options, the two pipelines alternating round by round. A frame is the raw camera buffer in
host memory -> outputs in host memory. When the original preprocesses in its own graph, today's pipeline has
no CPU step: the raw frame goes straight in. When it is a bare model, today's CPU step is the camera
conversion (OpenCV ``cvtColor`` where installed) and a float32 normalisation in numpy, timed as its own row."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgefold.cli.flags import add_camera_flags, existing_file, size
from edgefold.core.contract import InputContract, Meta, PixelFormat, camera_front_end
from edgefold.core.frames import InputFeed
from edgefold.errors import EXIT_OK, UsageError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency per camera frame against the original model as it is fed today",
                       description=__doc__.replace("``", ""))
    p.add_argument("model", type=existing_file, help="folded .onnx or .engine")
    p.add_argument("--baseline", type=existing_file,
                   help="the original model, of the same kind (.onnx against .onnx, an .engine against an .engine)")
    add_camera_flags(p)
    p.add_argument("--size", type=size, metavar="HxW", help="frame size for dynamic models (default 2048x2448)")
    p.add_argument("--frames", type=int, default=20, help="timed frames per pipeline (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames per pipeline first (default 3)")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads, the same for both models "
                   "(default: onnxruntime's)")
    p.add_argument("--batch", type=int, metavar="N",
                   help="several cameras: also time batches of 1, 2, 4 ... N frames (one per camera) and report "
                   "frames per second per camera count")
    p.set_defaults(run=run)


@dataclass
class TodayInput:
    """How today's pipeline gets one input of the original model from a raw camera frame."""

    name: str
    prepare: Callable[[np.ndarray], np.ndarray]  # raw frame (H x W or H x W x C, camera dtype) -> input tensor
    step: str | None  # what the CPU step does, or None when the frame goes in as it is


def _inputs(tensors) -> str:  # noqa: ANN001 - arrays
    return ", ".join(f"{x.dtype} {'x'.join(str(d) for d in x.shape)}" for x in tensors)


def _layout(x_chw: np.ndarray, feed: InputFeed) -> np.ndarray:
    """A (C, H, W) array as ``feed``'s input tensor: batch, channel axis, dtype."""
    batch = feed.shape[0] if feed.shape and isinstance(feed.shape[0], int) and feed.shape[0] > 1 else 1
    x = x_chw[None] if batch == 1 else np.repeat(x_chw[None], batch, axis=0)
    if feed.channel_axis == -1:
        x = x[:, 0]
    elif feed.channel_axis != 1:
        x = np.moveaxis(x, 1, feed.channel_axis)
    dtype = np.dtype(feed.dtype)
    if dtype.kind in "iu" and x.dtype.kind == "f":
        info = np.iinfo(dtype)
        x = np.clip(np.round(x), info.min, info.max)
    return np.ascontiguousarray(x, dtype=dtype)


def _chw(raw: np.ndarray) -> np.ndarray:
    return raw[None] if raw.ndim == 2 else np.moveaxis(raw, -1, 0)


def _normalise(matrix: np.ndarray, offset: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """(C, J) x (J, H, W) + offset in float32, as a user's numpy pipeline does it."""
    a = matrix.astype(np.float32)
    b = offset.astype(np.float32)[:, None, None]
    if a.shape[1] == 1:
        column = a[:, :1, None]
        return lambda x: column * x.astype(np.float32) + b
    return lambda x: np.tensordot(a, x.astype(np.float32), axes=1) + b


def _conversion(fmt: PixelFormat) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Today's conversion of a mosaic or YUV camera buffer (H x W) to (3, H, W) RGB, and its name: OpenCV's
    cvtColor where installed (its integer output, as in users' pipelines), else edgefold's float reference."""
    try:
        import cv2
    except ImportError:
        return (lambda raw: fmt.reference(raw[None], 3)), "edgefold's float reference (no OpenCV)"
    if fmt.mosaic:
        from edgefold.core.bayer import OPENCV_CODES

        code = getattr(cv2, OPENCV_CODES[fmt.mosaic])
        dtype = np.uint8 if fmt.bits == 8 else np.uint16
        return (lambda raw: cv2.cvtColor(raw.astype(dtype, copy=False), code).transpose(2, 0, 1)), "OpenCV cvtColor"
    if fmt.chroma and fmt.yuv == "bt601-limited":
        from edgefold.core.yuv import OPENCV_CODES as YUV_CODES

        code = getattr(cv2, YUV_CODES[fmt.chroma])
        if fmt.packed:
            return (lambda raw: cv2.cvtColor(raw.reshape(raw.shape[0], -1, 2), code).transpose(2, 0, 1)), \
                "OpenCV cvtColor"
        return (lambda raw: cv2.cvtColor(raw, code).transpose(2, 0, 1)), "OpenCV cvtColor"
    return (lambda raw: fmt.reference(raw[None], 3)), f"edgefold's float reference ({fmt.yuv} has no OpenCV code)"


def today_input(feed: InputFeed, raw_dtype: np.dtype, fmt: PixelFormat | None) -> TodayInput:
    """The CPU step today's pipeline runs for ``feed`` (how the original input receives a raw frame, after the
    camera's conversion when ``fmt`` is a mosaic or YUV format): none when the frame goes in as it is."""
    if fmt is not None and not fmt.per_pixel:
        convert, how = _conversion(fmt)
        scale = fmt.scale if fmt.mosaic else 1.0  # a >8-bit mosaic demosaics at its own depth
        norm = _normalise(feed.affine.matrix * scale, feed.affine.offset)
        return TodayInput(feed.name, lambda raw: _layout(norm(convert(raw)), feed),
                          f"{fmt.genicam} -> RGB ({how}), then normalise to {feed.dtype} (numpy)")
    affine = feed.affine
    if fmt is not None:  # Mono10/12/16, RGB8, ...: a per-pixel scale, composed with the normalisation
        matrix = affine.matrix @ fmt.to_model(affine.in_channels)
        offset = affine.offset
    else:
        matrix, offset = affine.matrix, affine.offset
    identity = matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(matrix.shape[0])) \
        and not offset.any()
    if identity and np.dtype(feed.dtype) == raw_dtype:
        return TodayInput(feed.name, lambda raw: _layout(_chw(raw), feed), None)
    norm = _normalise(matrix, offset)
    raw_kind = f"{raw_dtype.name} {matrix.shape[1]}ch"
    scale_only = not offset.any() and bool(((matrix != 0).sum(axis=1) == 1).all())
    what = "cast" if identity else ("scale" if scale_only else "normalise")
    return TodayInput(feed.name, lambda raw: _layout(norm(_chw(raw)), feed),
                      f"{what} {raw_kind} -> {feed.dtype} {matrix.shape[0]}ch (numpy)")


def _agreement(folded: dict[str, np.ndarray], today: dict[str, np.ndarray]) -> str:
    """How far the two pipelines' outputs are apart on the timed frame: both must compute the same thing."""
    worst, where = 0.0, ""
    for name, ref in today.items():
        got = folded.get(name)
        if got is None or got.shape != ref.shape:
            return f"output '{name}' differs in shape or name; the two models are not the same network"
        rel = float(np.abs(got.astype(np.float64) - ref).max()) / max(float(np.abs(ref).max()), 1e-12)
        if rel >= worst:
            worst, where = rel, name
    return f"outputs agree to {worst:.2g} of max |output| (worst '{where}')"


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 90))


def _hxw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _image_size(contract: InputContract, buffer: tuple[int, int]) -> tuple[int, int]:
    """The image a fixed camera buffer holds (a 4:2:0 buffer is (3H/2) x W): --size may name either."""
    fmt = contract.pixel_format
    return fmt.image_size(*buffer) if fmt is not None else buffer


def _frame(contract: InputContract, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random raw frame as the camera hands it over: H x W (gray, mosaic, YUV buffer) or H x W x C, uint8 or
    uint16 for deeper pixels. A YUV buffer encodes random RGB in 2x2 blocks (random bytes, or random pixels
    after chroma subsampling, are mostly out of gamut, which OpenCV clips and no camera sends)."""
    fmt = contract.pixel_format
    if fmt is not None and fmt.chroma:
        from edgefold.core.yuv import from_rgb

        h, w = fmt.image_size(*size)
        blocks = rng.integers(0, 256, (3, (h + 1) // 2, (w + 1) // 2)).repeat(2, axis=1).repeat(2, axis=2)
        return from_rgb(blocks[:, :h, :w], fmt.chroma, fmt.yuv)  # 2x2 blocks: chroma subsampling loses nothing
    top = int(contract.pixel_range[1])
    shape = size if contract.channels == 1 else (*size, contract.channels)
    return rng.integers(0, top + 1, shape).astype(np.uint8 if top <= 255 else np.uint16)


def _today_inputs(args: argparse.Namespace, folded_model, baseline, contracts: list[InputContract],  # noqa: ANN001
                  engine_info) -> list[TodayInput]:  # noqa: ANN001
    """One TodayInput per camera input of the folded model, in its order."""
    from edgefold.compare import CompareOptions, reference_feed
    from edgefold.compare.feeds import declared_feed
    from edgefold.graph.io import load_model

    options = CompareOptions(channels=args.channels, mean=args.mean, std=args.std, scale=args.scale)
    meta = {p.key: p.value for p in folded_model.metadata_props} if folded_model is not None else {}
    if engine_info is not None and engine_info.frontend:
        meta[Meta.FRONTEND] = json.dumps(engine_info.frontend)
    if engine_info is not None and engine_info.data.get("source_inputs"):
        meta.setdefault(Meta.SOURCE_INPUTS, json.dumps(engine_info.data["source_inputs"]))
    camera = camera_front_end(meta)
    fmt = camera[0] if camera is not None else None
    if camera is not None:
        meta[Meta.SOURCE_INPUTS] = json.dumps(camera[2])
    raw_dtype = [np.dtype(np.uint8 if c.pixel_range[1] <= 255 else np.uint16) for c in contracts]
    sources = json.loads(meta.get(Meta.SOURCE_INPUTS, "[]"))
    if sources and not options.declares and len(sources) >= len(contracts):
        feeds = [InputFeed.from_json(s) for s in sources[: len(contracts)]]
    elif len(contracts) > 1:
        raise UsageError(f"{args.baseline}: the folded model has {len(contracts)} camera inputs but records how the "
                         f"original receives only {len(sources)}; bench the model edgefold folded")
    elif args.baseline.endswith(ENGINE_SUFFIXES):  # an engine of the original: its contract, the declared map
        feeds = [declared_feed(InputFeed.from_contract(baseline.contract), contracts[0].channels, options)]
    else:
        inner = camera[1] if camera is not None else contracts[0].channels
        feeds = [reference_feed(load_model(args.baseline), meta, inner, options)]
    return [today_input(f, d, fmt) for f, d in zip(feeds, raw_dtype)]


def run(args: argparse.Namespace) -> int:
    from edgefold.compare.feeds import side_inputs
    from edgefold.graph.io import load_model
    from edgefold.runtime import Engine

    if args.batch is not None and args.batch < 1:
        raise UsageError("--batch needs a number of cameras >= 1")
    if args.baseline and args.model.endswith(ENGINE_SUFFIXES) != args.baseline.endswith(ENGINE_SUFFIXES):
        raise UsageError(f"--baseline {args.baseline}: bench times both models with one runtime; give an .onnx "
                         f"against an .onnx (onnxruntime) or an engine against an engine (TensorRT)")
    engine = Engine(args.model, threads=args.threads)
    limit = engine.max_batch
    if args.batch is not None and limit is not None and args.batch > limit:  # before any timing is printed
        fix = ("build it with a batch profile (--shapes NAME:1x.../{0}x.../{0}x...)" if args.model.endswith(
            ENGINE_SUFFIXES) else "export the model with a dynamic batch").format(args.batch)
        engine.close()
        raise UsageError(f"--batch {args.batch}: {args.model} takes at most {limit} "
                         f"frame{'s' if limit != 1 else ''} per call; {fix}")
    folded_model = load_model(args.model) if not args.model.endswith(ENGINE_SUFFIXES) else None
    contracts = engine.contracts
    rng = np.random.default_rng(0)
    frames = {}
    for c in contracts:
        fixed = c.static_size()
        if args.size and fixed and args.size not in (fixed, _image_size(c, fixed)):
            engine.close()
            raise UsageError(f"--size {_hxw(args.size)}: {args.model} takes fixed {_hxw(fixed)} frames (input "
                             f"'{c.name}'); drop --size, or fold the original at that size (--input-size "
                             f"{_hxw(args.size)})")
        buffer = fixed or args.size or (2048, 2448)
        frames[c.name] = _frame(c, buffer, rng)
    extra = side_inputs(folded_model, {c.name for c in contracts}) if folded_model is not None else {}
    folded_feed = {**frames, **extra}
    first = frames[contracts[0].name]
    baseline = today = None
    if args.baseline:
        baseline = Engine(args.baseline, threads=args.threads)
        today = _today_inputs(args, folded_model, baseline, contracts, engine.info)

    times: dict[str, list[float]] = {"folded": [], "today": [], "cpu": [], "model": []}

    def run_folded() -> None:
        t0 = time.perf_counter()
        engine.infer(folded_feed)
        times["folded"].append(1e3 * (time.perf_counter() - t0))

    def today_feeds() -> dict[str, np.ndarray]:
        return {t.name: t.prepare(frames[c.name]) for t, c in zip(today, contracts)}  # type: ignore[arg-type]

    def run_today() -> None:
        t0 = time.perf_counter()
        feeds = today_feeds()
        t1 = time.perf_counter()
        baseline.run({**feeds, **extra})  # type: ignore[union-attr]
        t2 = time.perf_counter()
        times["cpu"].append(1e3 * (t1 - t0))
        times["model"].append(1e3 * (t2 - t1))
        times["today"].append(1e3 * (t2 - t0))

    rounds = [run_folded] if baseline is None else [run_folded, run_today]
    for i in range(args.warmup + args.frames):
        if i == args.warmup:
            for v in times.values():
                v.clear()
        for step in (rounds if i % 2 == 0 else rounds[::-1]):  # alternate who goes first: same machine state
            step()
    shown = contracts[0].pixel_format
    kind = shown.genicam if shown is not None else f"{contracts[0].channels}-channel"
    cams = f" x {len(contracts)} camera inputs" if len(contracts) > 1 else ""
    print(f"{first.shape[0]}x{first.shape[1]} {kind} {first.dtype} frames{cams}, {args.frames} timed after "
          f"{args.warmup} warm-up, both pipelines alternating, backend {engine.backend_name}"
          + (f", {args.threads} thread(s)" if args.threads else ""))
    folded_tensors = engine.prepare_all(folded_feed)
    rows = [(f"folded model (input {_inputs(folded_tensors[c.name] for c in contracts)})", *_stats(times["folded"]))]
    if baseline is not None and today is not None:
        tensors = today_feeds()
        steps = [t.step for t in today if t.step]
        if steps:
            rows.append((f"today: CPU step: {'; '.join(dict.fromkeys(steps))}", *_stats(times["cpu"])))
            rows.append((f"today: original model (input {_inputs(tensors.values())})", *_stats(times["model"])))
            rows.append(("today: total", *_stats(times["today"])))
        else:
            rows.append((f"today: original model (input {_inputs(tensors.values())}: the raw frame as it is, no "
                         f"CPU step)", *_stats(times["today"])))
    width = max(len(r[0]) for r in rows)
    print(f"{'pipeline':{width}s} {'median ms':>10s} {'p90 ms':>10s}")
    for name, med, p90 in rows:
        print(f"{name:{width}s} {med:10.2f} {p90:10.2f}")
    if baseline is not None:
        ratio = statistics.median(b / f for b, f in zip(times["today"], times["folded"]))
        print(f"today / folded: {ratio:.2f}x (median of per-round ratios)")
        rounding = "; today's OpenCV conversion rounds to integers" if any("OpenCV" in s for s in steps) else ""
        print(f"same work: {_agreement(engine.run(folded_tensors), baseline.run({**tensors, **extra}))}{rounding}")
        baseline.close()
    if args.batch is not None:
        _cameras(engine, folded_feed, contracts, extra, args)
    engine.close()
    return EXIT_OK


def camera_counts(n: int) -> list[int]:
    """1, 2, 4, ... up to and including n."""
    counts, c = [], 1
    while c < n:
        counts.append(c)
        c *= 2
    return counts + [n]


def _cameras(engine, feed: dict, contracts: list[InputContract], extra: dict,  # noqa: ANN001 - an Engine
             args: argparse.Namespace) -> None:
    """Frames per second per camera count: one batched call per round, N cameras' frames in it."""
    print(f"{'cameras':>8s} {'median ms':>10s} {'frames/s':>10s} {'per camera':>11s}")
    for count in camera_counts(args.batch):
        batch = {**{c.name: [feed[c.name]] * count for c in contracts}, **extra}
        for _ in range(args.warmup):
            engine.infer(batch)
        ms = []
        for _ in range(args.frames):
            t0 = time.perf_counter()
            engine.infer(batch)
            ms.append(1e3 * (time.perf_counter() - t0))
        med = statistics.median(ms)
        print(f"{count:8d} {med:10.2f} {1e3 * count / med:10.1f} {1e3 / med:11.1f}")
