"""From camera to result (issue 22): Aravis' fake GenICam camera at 2048x2048 BayerRG8 (its sensor size, frame rate
set to 1000) streamed through ``edgefold run``'s pipeline (acquisition thread, bounded queue, ``--drop none``).

- edgefold: the camera's raw buffer into the model folded with ``--pixel-format BayerRG8``, zero copy (the camera
  writes into memory the engine reads in place);
- edgefold, copying: the same, each buffer copied out of the camera (PyGObject's ``get_data``), as before zero copy;
- today: OpenCV ``cvtColor`` (sensor RGGB = ``COLOR_BayerBG2RGB``) + numpy normalisation + the original model, each
  buffer copied out as a user's own loop does.

All in one process, the same camera and the same pipeline, rounds interleaved. CPU-seconds are the process's
(``time.process_time``: every thread, the fake camera's frame generation included, the same for all); frames/s are
wall-clock. A second table isolates what zero copy saves: the camera alone (``read`` then ``done``, no engine),
each buffer copied out or read in place. Network: the ResNet stem of bench/pixel_formats.py; onnxruntime on the
CPU, 1 thread.

    python bench/camera.py [--frames 8] [--rounds 3] [--net resnet-stem|stem+conv]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
from pixel_formats import MEAN, STD, bare_model, session

from edgefold.cli.main import main as edgefold
from edgefold.runtime import Engine
from edgefold.runtime.ort_backend import aligned
from edgefold.runtime.pipeline import RunOptions, stream
from edgefold.runtime.sources import open_source

SIZE = 2048


class Today:
    """The pipeline people run now, behind the Engine interface ``stream`` uses: demosaic, normalise, original."""

    def __init__(self, original_path: Path, contract) -> None:  # noqa: ANN001 - the folded engine's contract
        self.sess = session(str(original_path))
        self.input = self.sess.get_inputs()[0].name
        self.contract, self.max_batch = contract, 1

    def infer(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        rgb = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 255.0
        x = np.ascontiguousarray(((rgb - MEAN) / STD).transpose(2, 0, 1)[None])
        return {"out": self.sess.run(None, {self.input: x})[0]}


def measure(engine, frames: int, zero_copy: bool) -> tuple[float, float]:  # noqa: ANN001
    """(CPU-seconds per frame, frames per second) for ``frames`` frames from the fake camera."""
    options = RunOptions(drop="none", frames=frames, zero_copy=zero_copy)
    source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
    stream(engine, [source], replace(options, frames=1), [])  # warm up: first buffers, first run
    source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
    cpu, wall = time.process_time(), time.perf_counter()
    summary = stream(engine, [source], options, [])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert summary.frames == frames and summary.error is None, summary.to_json()
    return cpu / frames, frames / wall


def acquire(contract, frames: int, zero_copy: bool) -> float:  # noqa: ANN001
    """CPU-seconds per frame of the camera alone: each frame read and handed back at once."""
    source = open_source("aravis:Fake_1", contract, frame_rate=1000)
    if zero_copy:
        assert source.map_buffers(aligned, held=1) is None
    source.start()
    try:
        for _ in range(2):  # warm up
            source.read().done()  # type: ignore[union-attr]
        cpu = time.process_time()
        for _ in range(frames):
            source.read().done()  # type: ignore[union-attr]
        return (time.process_time() - cpu) / frames
    finally:
        source.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--net", choices=("resnet-stem", "stem+conv"), default="resnet-stem")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "bare.onnx", Path(tmp) / "camera.onnx"
        onnx.save(bare_model(SIZE, SIZE, args.net), str(src))
        assert edgefold(["fold", str(src), "-o", str(out), "--pixel-format", "BayerRG8", "--mean",
                         ",".join(f"{v:g}" for v in MEAN), "--std", ",".join(f"{v:g}" for v in STD), "--scale", "255",
                         "--no-verify", "-q"]) == 0
        with Engine(out, threads=1) as folded:
            today = Today(src, folded.contract)
            rows: dict[str, list[tuple[float, float]]] = {"today": [], "edgefold, copying": [], "edgefold": []}
            for _ in range(args.rounds):
                rows["today"].append(measure(today, args.frames, zero_copy=False))
                rows["edgefold, copying"].append(measure(folded, args.frames, zero_copy=False))
                rows["edgefold"].append(measure(folded, args.frames, zero_copy=True))
            alone: dict[str, list[float]] = {"copied out": [], "zero copy": []}
            for _ in range(args.rounds):
                alone["copied out"].append(acquire(folded.contract, 8 * args.frames, zero_copy=False))
                alone["zero copy"].append(acquire(folded.contract, 8 * args.frames, zero_copy=True))
    print(f"\nfake camera {SIZE}x{SIZE} BayerRG8 -> {args.net}, edgefold run's pipeline (--drop none), onnxruntime "
          f"CPU 1 thread, {args.frames} frames x {args.rounds} interleaved rounds, medians\n")
    print("| pipeline | CPU-seconds / frame | frames/s | frames per CPU-second |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        cpu = statistics.median(c for c, _ in row)
        fps = statistics.median(f for _, f in row)
        print(f"| {name} | {cpu:.4f} | {fps:.2f} | {1 / cpu:.2f} |")

    def ratios(base: str, new: str) -> tuple[float, float]:
        """Medians of the per-round ratios: frames per CPU-second, frames/s."""
        pairs = list(zip(rows[base], rows[new]))
        return statistics.median(b[0] / n[0] for b, n in pairs), statistics.median(n[1] / b[1] for b, n in pairs)

    cpu_ratio, fps_ratio = ratios("today", "edgefold")
    print(f"\nedgefold / today: {cpu_ratio:.2f}x frames per CPU-second (goal >= 1.5x), {fps_ratio:.2f}x frames/s")
    cpu_ratio, fps_ratio = ratios("edgefold, copying", "edgefold")
    print(f"zero copy / copying: {cpu_ratio:.3f}x frames per CPU-second, {fps_ratio:.3f}x frames/s "
          f"(medians of per-round ratios)")
    print(f"\nthe camera alone (read, handed back; the fake camera's frame generation included), "
          f"{8 * args.frames} frames x {args.rounds} rounds, medians\n")
    print("| buffer | CPU-ms / frame |")
    print("|---|---|")
    for name, cpus in alone.items():
        print(f"| {name} | {statistics.median(cpus) * 1e3:.2f} |")
    saved = statistics.median(c - z for c, z in zip(alone["copied out"], alone["zero copy"]))
    print(f"\nzero copy saves {saved * 1e3:.2f} CPU-ms per frame (median of per-round differences)")


if __name__ == "__main__":
    main()
