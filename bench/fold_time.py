"""Cost of ``edgefold fold`` as a user runs it: the CLI in a fresh process, a model file in, a model file out,
self-check included. Wall time and peak RSS (the process's high-water mark) side by side with the targets of
issue 14 and with the figures measured before that work.

1. A ResNet-50-size model (25.5 M parameters, 102 MB, built in code) with gray preprocessing in its graph:
   target <= 3 s and peak RSS <= 3 x the model's size + 300 MB. Three runs; the median is reported.
2. (``--large``) A 2.5 GB model with external data (a conv stem and 25 fully connected layers of 100 MB):
   target: folds within 12 GB of RSS. Needs ~5 GB of free disk for the model and its folded copy.

    python bench/fold_time.py [--large]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from edgefold.graph.builder import ModelBuilder, gray_normalise

# measured on this machine with the code before the issue-14 work (commit 077d611), same benchmark
BEFORE = {"resnet50": "3.5 s / 900 MB", "large-2.5GB": "exit 5 (internal error)"}


def resnet50(h: int = 224, w: int = 224) -> onnx.ModelProto:
    b = ModelBuilder(seed=0)
    x = b.input("image", [1, 1, h, w], np.uint8)
    y = b.op("Relu", [b.conv(gray_normalise(b, x), 3, 64, k=7, stride=2, name="stem")])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for mid, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            r = b.op("Relu", [b.conv(y, cin, mid, k=1, pad=0)])
            r = b.op("Relu", [b.conv(r, mid, mid, k=3, stride=s)])
            r = b.conv(r, mid, mid * 4, k=1, pad=0)
            shortcut = b.conv(y, cin, mid * 4, k=1, stride=s, pad=0) if i == 0 else y
            y = b.op("Relu", [b.op("Add", [r, shortcut])])
            cin = mid * 4
    g = b.op("Flatten", [b.op("GlobalAveragePool", [y])])
    fc = (b.rng.standard_normal((2048, 1000)) / 45).astype(np.float32)
    return b.model([b.op("Gemm", [g, b.const(fc), b.const(np.zeros(1000, np.float32))])])


def large(layers: int = 25, width: int = 5000) -> onnx.ModelProto:
    """~2.5 GB: a gray-normalised conv stem, pooled to a vector, then ``layers`` width x width Gemms."""
    b = ModelBuilder(seed=1)
    x = b.input("image", [1, 1, 64, 64], np.uint8)
    y = b.op("Relu", [b.conv(gray_normalise(b, x), 3, 8, k=3, stride=2, name="stem")])
    v = b.op("Flatten", [b.op("GlobalAveragePool", [y])])
    v = b.op("Gemm", [v, b.const((b.rng.standard_normal((8, width)) / 3).astype(np.float32))])
    for _ in range(layers):
        w = b.rng.standard_normal((width, width), dtype=np.float32)
        w *= 1.0 / np.sqrt(width)
        v = b.op("Tanh", [b.op("Gemm", [v, b.const(w)])])
    # over 2 GB: assembled without ModelBuilder.model's shape inference and checker (one protobuf each)
    out = onnx.helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, [1, width])
    graph = onnx.helper.make_graph(b.nodes, "large", b.inputs, [out], initializer=b.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    return model


def run_cli(model: Path, out: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one ``edgefold fold`` in a fresh process."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "r = subprocess.run(sys.argv[1:]); w = time.perf_counter() - t; "
             "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")
    cmd = [sys.executable, "-c", probe, sys.executable, "-m", "edgefold", "fold", str(model), "-o", str(out), "-q"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall, peak = result.stdout.split()
    return float(wall), float(peak)


def row(name: str, size_mb: float, runs: list[tuple[float, float]], time_target: float | None,
        rss_target: float) -> str:
    wall = statistics.median(r[0] for r in runs)
    peak = max(r[1] for r in runs)
    was = BEFORE.get(name, "-")
    t_ok = "-" if time_target is None else ("yes" if wall <= time_target else "NO")
    return (f"| {name} | {size_mb:.0f} MB | {wall:.2f} s ({', '.join(f'{r[0]:.2f}' for r in runs)}) | "
            f"{'-' if time_target is None else f'<= {time_target:g} s'} | {t_ok} | {peak:.0f} MB | "
            f"<= {rss_target:.0f} MB | {'yes' if peak <= rss_target else 'NO'} | {was} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true", help="also the 2.5 GB external-data model")
    args = ap.parse_args()
    print("| model | size | fold + verify, median (runs) | target | met | peak RSS | target | met | before |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="edgefold-bench-") as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(resnet50(), str(path))
        size = path.stat().st_size / 2**20
        runs = [run_cli(path, Path(tmp) / "out.onnx") for _ in range(3)]
        print(row("resnet50", size, runs, 3.0, 3 * size + 300), flush=True)
        if args.large:
            path = Path(tmp) / "large.onnx"
            t0 = time.perf_counter()
            onnx.save(large(), str(path), save_as_external_data=True, location="large.onnx.data", size_threshold=1024)
            size = (path.stat().st_size + (Path(tmp) / "large.onnx.data").stat().st_size) / 2**20
            print(f"(built the large model in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            print(row("large-2.5GB", size, [run_cli(path, Path(tmp) / "large.out.onnx")], None, 12 * 1024))


if __name__ == "__main__":
    main()
