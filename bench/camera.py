"""From camera to result (issue 22): Aravis' fake GenICam camera at 2048x2048 BayerRG8 (its sensor size, frame rate
set to 1000) streamed through ``edgefold run``'s pipeline (acquisition thread, bounded queue, ``--drop none``).

- edgefold: the camera's raw buffer into the model folded with ``--pixel-format BayerRG8``;
- today: OpenCV ``cvtColor`` (sensor RGGB = ``COLOR_BayerBG2RGB``) + numpy normalisation + the original model.

Both in one process, the same camera and the same pipeline, rounds interleaved. CPU-seconds are the process's
(``time.process_time``: every thread, the fake camera's frame generation included, the same for both);
frames/s are wall-clock. Network: the ResNet stem of bench/pixel_formats.py; onnxruntime on the CPU, 1 thread.

    python bench/camera.py [--frames 8] [--rounds 3] [--net resnet-stem|stem+conv]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
from pixel_formats import MEAN, STD, bare_model, session

from edgefold.cli.main import main as edgefold
from edgefold.runtime import Engine
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


def measure(engine, frames: int) -> tuple[float, float]:  # noqa: ANN001
    """(CPU-seconds per frame, frames per second) for ``frames`` frames from the fake camera."""
    source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
    stream(engine, [source], RunOptions(drop="none", frames=1), [])  # warm up: first buffers, first run
    source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
    cpu, wall = time.process_time(), time.perf_counter()
    summary = stream(engine, [source], RunOptions(drop="none", frames=frames), [])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert summary.frames == frames and summary.error is None, summary.to_json()
    return cpu / frames, frames / wall


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
            rows: dict[str, list[tuple[float, float]]] = {"edgefold": [], "today": []}
            for _ in range(args.rounds):
                rows["today"].append(measure(today, args.frames))
                rows["edgefold"].append(measure(folded, args.frames))
    print(f"\nfake camera {SIZE}x{SIZE} BayerRG8 -> {args.net}, edgefold run's pipeline (--drop none), onnxruntime "
          f"CPU 1 thread, {args.frames} frames x {args.rounds} interleaved rounds, medians\n")
    print("| pipeline | CPU-seconds / frame | frames/s | frames per CPU-second |")
    print("|---|---|---|---|")
    for name in ("today", "edgefold"):
        cpu = statistics.median(c for c, _ in rows[name])
        fps = statistics.median(f for _, f in rows[name])
        print(f"| {name} | {cpu:.3f} | {fps:.2f} | {1 / cpu:.2f} |")
    ratio = statistics.median(t[0] / e[0] for t, e in zip(rows["today"], rows["edgefold"]))
    fps_ratio = statistics.median(e[1] / t[1] for t, e in zip(rows["today"], rows["edgefold"]))
    print(f"\nedgefold / today: {ratio:.2f}x frames per CPU-second (goal >= 1.5x), {fps_ratio:.2f}x frames/s "
          f"(median of per-round ratios)")


if __name__ == "__main__":
    main()
