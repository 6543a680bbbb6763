"""Streaming frames into an engine: one acquisition thread per source, a bounded slot per source, the engine on
the caller's thread, results handed to sinks.

``drop="latest"`` (real time): a slot holds one frame; a newer one replaces it and the older is counted as a
drop, so a source faster than the engine shows up in the drop count, never as memory. ``drop="none"``
(offline): a slot holds ``depth`` frames and the acquisition thread waits for room - every frame it received is
run; a live camera then loses frames inside its driver, and those count as drops too. ``drop=None``: each source
its own - latest for a live one (camera, stream), none for a file or folder.

Several sources feed one call as a batch - one row per source, in source order - where the engine's contract
takes that many frames per call (the multi-camera contract); otherwise they take turns (round robin).

Zero copy: a camera source (``map_buffers``) gets its buffers in the engine's host memory (TensorRT: pinned) where
the engine reads its frames as they are - one frame per call, the camera's dtype and layout; the frame is a view
of its buffer, which goes back to the camera once the frame is done: after inference and the sinks, when a newer
frame replaces it (``drop="latest"``), or at the end. A sink that keeps a frame past ``add`` keeps a copy. The
summary's notes say which path each source took ("zero-copy" or "one copy: why").

    from edgefold.runtime import Engine
    from edgefold.runtime.pipeline import RunOptions, stream
    from edgefold.runtime.sources import open_source
    with Engine("m.camera.onnx") as engine:
        summary = stream(engine, [open_source("aravis:", engine.contract)], RunOptions(frames=100), sinks=[])
"""
from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgefold.errors import EdgefoldError, UsageError
from edgefold.runtime.engine import Engine
from edgefold.runtime.ort_backend import aligned
from edgefold.runtime.sources import Frame, Source, Target

LATENCY_WINDOW = 100_000  # latencies kept per camera for the percentiles (a long run keeps the most recent)


@dataclass(frozen=True)
class RunOptions:
    drop: str | None = "latest"  # "latest" | "none" | None: per source, latest for a live one, none for the rest
    frames: int | None = None  # stop after this many frames in total
    seconds: float | None = None  # stop after this long
    depth: int = 4  # frames a slot holds with drop="none"
    zero_copy: bool = True  # camera buffers in the engine's memory where it reads them as they are

    def __post_init__(self) -> None:
        if self.drop not in ("latest", "none", None):
            raise UsageError(f"--drop must be latest or none, not {self.drop!r}")
        if self.frames is not None and self.frames < 1:
            raise UsageError("--frames must be at least 1")
        if self.seconds is not None and not self.seconds > 0:
            raise UsageError("--seconds must be positive")
        if self.depth < 1:
            raise UsageError("the queue depth must be at least 1")


@dataclass
class Result:
    frame: Frame
    outputs: dict[str, np.ndarray]  # this frame's row of each output (batch axis kept, length 1)
    done: float  # time.monotonic() when the engine returned

    @property
    def latency(self) -> float:
        """Seconds from the buffer reaching edgefold to its outputs."""
        return self.done - self.frame.acquired


@dataclass
class CameraStats:
    name: str
    frames: int = 0
    drops: int = 0  # frames replaced in the slot (drop="latest") or lost in the camera's driver (no free buffer)
    skipped: int = 0  # buffers the source could not use (incomplete, failed, wrong format)
    first: float | None = None
    last: float | None = None
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        if self.frames < 2 or self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.frames - 1) / (self.last - self.first)

    def latency_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies), q) * 1e3) if self.latencies else 0.0

    def to_json(self) -> dict:
        return {"camera": self.name, "frames": self.frames, "fps": round(self.fps, 3), "drops": self.drops,
                "skipped": self.skipped, "latency_p50_ms": round(self.latency_ms(50), 3),
                "latency_p99_ms": round(self.latency_ms(99), 3), "notes": self.notes}


@dataclass
class Summary:
    cameras: list[CameraStats]
    mode: str  # "batch" | "round-robin"
    seconds: float = 0.0
    stopped_by: str = "end"  # "end" | "frames" | "seconds" | "interrupted" | "error"
    error: EdgefoldError | None = None

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)

    def to_json(self) -> dict:
        return {"mode": self.mode, "frames": self.frames, "seconds": round(self.seconds, 3),
                "stopped_by": self.stopped_by, "error": str(self.error) if self.error else None,
                "cameras": [c.to_json() for c in self.cameras]}


class Sink(Protocol):
    def add(self, result: Result, stats: CameraStats) -> None:
        """``result.frame.raw`` may be a camera buffer, valid only until ``add`` returns: copy what is kept."""
        ...

    def close(self) -> None: ...


class Slot:
    """The bounded hand-over between one acquisition thread and the engine."""

    def __init__(self, capacity: int, replace: bool) -> None:
        self.frames: collections.deque[Frame] = collections.deque()
        self.capacity, self.replace = capacity, replace
        self.cond = threading.Condition()
        self.drops = 0
        self.ended = False
        self.error: BaseException | None = None

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self.cond:
            if self.replace:
                if self.frames:
                    self.frames.popleft().done()  # its buffer goes back to the camera
                    self.drops += 1
            else:
                while len(self.frames) >= self.capacity and not stop.is_set():
                    self.cond.wait(0.05)
            self.frames.append(frame)
            self.cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        with self.cond:
            if not self.frames and not self.ended:
                self.cond.wait(timeout)
            if not self.frames:
                return None
            frame = self.frames.popleft()
            self.cond.notify_all()
            return frame

    def clear(self) -> None:
        """Hand back every frame still queued (the run is over)."""
        with self.cond:
            while self.frames:
                self.frames.popleft().done()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.ended, self.error = True, error
            self.cond.notify_all()

    @property
    def drained(self) -> bool:
        with self.cond:
            return self.ended and not self.frames


def _acquire(source: Source, slot: Slot, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            frame = source.read()
            if frame is None:
                break
            slot.put(frame, stop)
        slot.finish()
    except BaseException as err:  # noqa: BLE001 - handed to the engine's thread, which reports it
        slot.finish(err)


def batch_mode(engine: Engine, n_sources: int) -> str:
    """"batch" where one call takes a frame from every source, else "round-robin"."""
    fixed = engine.contract.shape[0]
    if isinstance(fixed, int) and fixed > 1 and fixed != n_sources:
        raise UsageError(f"the engine takes exactly {fixed} frames per call (one per camera); give {fixed} --source")
    if n_sources == 1:
        return "round-robin"
    limit = engine.max_batch
    return "batch" if (fixed == n_sources or (not isinstance(fixed, int) and (limit is None or limit >= n_sources))) \
        else "round-robin"


def stream(engine: Engine, sources: Sequence[Source], options: RunOptions, sinks: Sequence[Sink]) -> Summary:
    """Run until the sources end, ``options.frames``/``seconds`` are reached, a source is lost (``error``: the
    results so far were handed to the sinks) or Ctrl-C (``stopped_by="interrupted"``). Sinks are not closed."""
    if not sources:
        raise UsageError("no --source given")
    mode = batch_mode(engine, len(sources))
    stats = [CameraStats(s.name, notes=s.notes) for s in sources]
    summary = Summary(stats, mode)
    replace = [options.drop == "latest" if options.drop else s.live for s in sources]
    slots = [Slot(1 if r else options.depth, r) for r in replace]
    stop = threading.Event()
    threads = [threading.Thread(target=_acquire, args=(s, slot, stop), name=f"edgefold-acquire-{i}", daemon=True)
               for i, (s, slot) in enumerate(zip(sources, slots))]
    start = time.monotonic()
    try:
        # frames held outside a camera's driver: a slot's, the one the acquisition thread is handing over, the
        # one in the engine
        for source, st, slot in zip(sources, stats, slots):
            st.notes.append(_memory_path(engine, source, mode, len(sources), slot.capacity + 2, options.zero_copy))
        for source in sources:
            source.start()
        for t in threads:
            t.start()
        summary.stopped_by = _loop(engine, sources, slots, stats, options, sinks, mode, start)
    except KeyboardInterrupt:
        summary.stopped_by = "interrupted"
    except EdgefoldError as err:
        summary.stopped_by, summary.error = "error", err
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5.0)
        for source, st, slot in zip(sources, stats, slots):
            slot.clear()
            source.close()
            st.drops, st.skipped = slot.drops + source.missed, source.skipped
        summary.seconds = time.monotonic() - start
    return summary


def _loop(engine: Engine, sources: Sequence[Source], slots: list[Slot], stats: list[CameraStats], options: RunOptions,
          sinks: Sequence[Sink], mode: str, start: float) -> str:
    turn = 0
    while True:
        if options.seconds is not None and time.monotonic() - start >= options.seconds:
            return "seconds"
        for slot in slots:
            if slot.error is not None and slot.drained:
                raise slot.error
        if mode == "batch":
            if any(slot.drained for slot in slots):
                return "end"
            picked = _gather(slots, list(range(len(slots))))
        else:
            open_ = [i for i, slot in enumerate(slots) if not slot.drained]
            if not open_:
                return "end"
            order = open_[turn % len(open_):] + open_[:turn % len(open_)]
            turn += 1
            picked = _first(slots, order)
        if not picked:
            continue
        try:
            if _run(engine, picked, stats, slots, sources, sinks, options):
                return "frames"
        finally:
            for _, frame in picked:
                frame.done()  # after inference and the sinks: the buffer goes back to the camera


def _run(engine: Engine, picked: list[tuple[int, Frame]], stats: list[CameraStats], slots: list[Slot],
         sources: Sequence[Source], sinks: Sequence[Sink], options: RunOptions) -> bool:
    """One engine call on the picked frames, each result to the sinks; True once ``options.frames`` are done."""
    outputs = engine.infer([f.raw for _, f in picked]) if len(picked) > 1 else engine.infer(picked[0][1].raw)
    done = time.monotonic()
    for row, (i, frame) in enumerate(picked):
        result = Result(frame, {k: _row(v, row, len(picked)) for k, v in outputs.items()}, done)
        st = stats[i]
        st.frames += 1
        st.first = done if st.first is None else st.first
        st.last = done
        st.latencies.append(result.latency)
        st.drops = slots[i].drops + sources[i].missed
        for sink in sinks:
            sink.add(result, st)
        if options.frames is not None and sum(s.frames for s in stats) >= options.frames:
            return True
    return False


def _memory_path(engine: Engine, source: Source, mode: str, n_sources: int, held: int, zero_copy: bool) -> str:
    """Sets a camera source's buffers in the engine's host memory where the engine reads its frames as they are
    (or in memory of its own where the engine arranges them anyway), and says which path the source's frames
    take: "zero-copy", or "one copy: why"."""
    map_buffers = getattr(source, "map_buffers", None)
    if map_buffers is not None and not zero_copy:
        return "one copy: PyGObject copies each buffer out (zero copy turned off)"
    target = Target.of(engine.contract)
    shape = target.shape(target.size or (2, 2))  # a dynamic input: the layout is what matters, not the size
    assert shape is not None
    why = (f"the {n_sources} cameras' frames are stacked into one batch tensor" if mode == "batch"
           else engine.feed_copy(shape, target.dtype, in_host_memory=True))
    if map_buffers is None:
        why = why or engine.feed_copy(shape, target.dtype, in_host_memory=False)
        return f"one copy: {why}" if why else "zero-copy: onnxruntime reads each frame where the source made it"
    why = map_buffers(engine.host_memory if why is None else aligned, held) or why
    if why:
        return f"one copy: {why}"
    return ("zero-copy: the camera writes into the engine's pinned host memory, which TensorRT copies to the GPU"
            if engine.backend_name == "tensorrt" else "zero-copy: the camera writes into memory onnxruntime reads "
            "in place")


def _gather(slots: list[Slot], order: list[int]) -> list[tuple[int, Frame]]:
    """One frame from every source (a batch), waiting for each; empty when one ended or was lost."""
    picked = []
    for i in order:
        frame = None
        while frame is None:
            frame = slots[i].get(0.05)
            if frame is None and slots[i].drained:
                return []
        picked.append((i, frame))
    return picked


def _first(slots: list[Slot], order: list[int]) -> list[tuple[int, Frame]]:
    """The next frame in turn: the first source in ``order`` that has one (waiting briefly on each)."""
    for i in order:
        frame = slots[i].get(0.0 if len(order) > 1 else 0.05)
        if frame is not None:
            return [(i, frame)]
    if len(order) > 1:
        time.sleep(0.002)  # nothing ready anywhere: a moment before the next round
    return []


def _row(value: np.ndarray, row: int, n: int) -> np.ndarray:
    return value[row:row + 1] if value.ndim and value.shape[0] == n else value
