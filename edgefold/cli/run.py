"""``edgefold run MODEL|ENGINE --source ...``: stream cameras, videos or folders into an engine (sources, the
Engine and sinks composed here); a summary per camera at the end."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from edgefold.cli.flags import port, positive, positive_int
from edgefold.cli.flags import size as size_arg
from edgefold.errors import EXIT_OK

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, systemd), raised where Ctrl-C would be: handled the same way."""

    exit_code = EXIT_TERMINATED
    what = "terminated"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[list[int]]:
    """While inside: SIGTERM raises ``Terminated`` on the main thread (once; a second one during the flush is
    ignored) and is noted in the yielded list. Restored after."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield got
        return

    def handler(signum: int, _frame: object) -> None:
        if not got:
            got.append(signum)
            raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


def _pair(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (pixels), got {text!r}") from None
    if x < 0 or y < 0:
        raise argparse.ArgumentTypeError(f"offsets must not be negative, got {text!r}")
    return x, y


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="stream cameras, videos or folders into a model or engine",
                       description="Acquires on one thread per source into a bounded queue, runs the engine and "
                       "writes results as they come. A camera is set to what the engine reads (pixel format, "
                       "size); one that cannot is refused before anything is written. Exit 0; 2 usage; 7 a camera "
                       "or stream lost mid-run (results so far kept); 130 Ctrl-C, 143 SIGTERM (both: results flushed, "
                       "summary printed).")
    p.add_argument("model", help="folded .onnx (onnxruntime, CPU) or .engine (TensorRT, with its NAME.json)")
    p.add_argument("--source", action="append", required=True, metavar="SPEC",
                   help="aravis:DEVICE (aravis: = the first camera), v4l2:N (or /dev/videoN, v4l2:/dev/PATH), "
                   "rtsp://..., a video file, or a folder "
                   "of images or .raw/.bin buffers; repeat for several cameras (a batch where the engine takes one)")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames in total")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--drop", choices=("latest", "none"),
                   help="latest: real time, keep each camera's newest frame and count drops; none: every frame "
                   "(default: each source its own - latest for a camera or stream, none for a file or folder)")
    p.add_argument("--out", metavar="FILE.jsonl", help="one JSON line per frame: camera, frame id, timestamp, "
                   "latency, output summary (top-k, positive share and boxes of maps, statistics)")
    p.add_argument("--record", metavar="DIR", help="one CAMERA-FRAMEID.npz per frame: raw buffer and outputs")
    p.add_argument("--view", type=port, metavar="PORT",
                   help="serve a live page on http://127.0.0.1:PORT (0: any free port, printed)")
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="top-k classes in --out (default 5)")
    p.add_argument("--size", type=size_arg, metavar="HxW", help="frame size for an engine with a dynamic input")
    p.add_argument("--roi", type=_pair, metavar="X,Y", help="camera region offset (default: centred on the sensor)")
    p.add_argument("--fps", type=positive, help="set the camera's frame rate (aravis: sources)")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when stderr is not a terminal")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        # OpenCV's video backends log their own failures to stderr (FFmpeg: "Connection refused", V4L2: "can't open
        # camera by name"); edgefold reports each in one line. OpenCV reads these once (the log level on import,
        # FFmpeg's before its first video); -v keeps their logs. Set only where the user has not.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    with _sigterm_as_interrupt() as terminated:
        return _run(args, terminated)


def _run(args: argparse.Namespace, terminated: list[int]) -> int:
    from edgefold.runtime import Engine
    from edgefold.runtime.pipeline import RunOptions, stream
    from edgefold.runtime.sinks import JsonlSink, ProgressSink, RecordSink
    from edgefold.runtime.sources import Source, Target, open_source

    _check_outputs(args)
    sinks: list = []
    if args.out:
        sinks.append(JsonlSink(args.out, args.top))
    if args.record:
        sinks.append(RecordSink(args.record))
    with Engine(args.model) as engine:
        sources: list[Source] = []
        started = False
        try:
            for spec in args.source:
                sources.append(open_source(spec, engine.contract, size=args.size, roi=args.roi, frame_rate=args.fps))
            options = RunOptions(drop=args.drop, frames=args.frames, seconds=args.seconds)  # None: per source
            if args.view is not None:
                from edgefold.runtime.sinks.view import ViewSink

                sinks.append(ViewSink(args.view, Target.of(engine.contract, args.size).fmt))
            sinks.append(ProgressSink(args.frames, force=args.progress))
            started = True
            summary = stream(engine, sources, options, sinks)
        finally:
            for sink in sinks:
                sink.close()
            if not started:
                for source in sources:
                    source.close()
    if terminated and summary.stopped_by == "interrupted":
        summary.stopped_by = "terminated"
    print_summary(summary, engine.backend_name, options.drop or _drop_by_source(sources))
    if summary.error is not None:
        from edgefold.cli.main import printable

        kept = "results up to then are kept" if summary.frames else "no frame was processed"
        print(f"edgefold: error: {printable(str(summary.error))}; {kept}", file=sys.stderr)
        return summary.error.exit_code
    return {"interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED}.get(summary.stopped_by, EXIT_OK)


def _check_outputs(args: argparse.Namespace) -> None:
    """Before any work: --fps and --source make sense together, and --out and --record are not the model, a
    source or each other."""
    from pathlib import Path

    from edgefold.errors import UsageError
    from edgefold.graph.outputs import RunOutputs

    if args.fps is not None and not any(spec.startswith("aravis:") for spec in args.source):
        raise UsageError(f"--fps sets an aravis: camera's frame rate; {args.source[0]} is not one (files and folders "
                         f"run as fast as the engine, a stream or V4L2 device at its own rate): drop --fps")
    twice = next((spec for i, spec in enumerate(args.source) if spec in args.source[:i]), None)
    if twice is not None:  # a camera is known by its spec: the JSONL lines and --record files of both would collide
        raise UsageError(f"--source {twice} is given twice: each source is one camera, named by its spec in --out "
                         f"and --record; give it once")
    guard = RunOutputs()
    guard.protect_model(args.model)
    folders = []
    for spec in args.source:
        if Path(spec).exists():
            guard.protect(spec, f"the source {spec}")
            folders.append(Path(spec).resolve())
    guard.claim(args.out, "--out")
    if args.record:
        record = Path(args.record).resolve()
        if record in folders or (args.out and record == Path(args.out).resolve()):
            raise UsageError(f"--record {args.record}: that is {'--out' if record not in folders else 'a source'}; "
                             f"choose another folder")


def _drop_by_source(sources: list) -> str:
    live = {s.live for s in sources}
    return "latest (cameras, streams) / none (files)" if len(live) > 1 else "latest" if True in live else "none"


# the other reasons read as they are: end, frames, seconds, error
_STOPPED = {"interrupted": "Ctrl-C", "terminated": "SIGTERM"}


def print_summary(summary, backend: str, drop: str) -> None:  # noqa: ANN001 - a pipeline.Summary
    print(f"edgefold run: {summary.frames} frames in {summary.seconds:.2f} s ({backend}, {summary.mode}, "
          f"--drop {drop}, stopped by {_STOPPED.get(summary.stopped_by, summary.stopped_by)})")
    width = max(len(c.name) for c in summary.cameras)
    print(f"  {'camera':<{width}}  frames      fps   p50 ms   p99 ms  drops  skipped")
    for c in summary.cameras:
        print(f"  {c.name:<{width}}  {c.frames:>6}  {c.fps:>7.1f}  {c.latency_ms(50):>7.2f}  {c.latency_ms(99):>7.2f}"
              f"  {c.drops:>5}  {c.skipped:>7}")
        for note in c.notes:
            print(f"  {'':<{width}}  {note}")
    sys.stdout.flush()
