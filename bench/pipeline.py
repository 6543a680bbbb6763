"""Whole pipeline as a user measures it: ``edgefold fold`` then ``edgefold bench FOLDED --baseline ORIGINAL``,
run through the CLI's own entry point (in this process), on

- the demo model (its graph preprocesses: uint8 -> Cast, x3, /255, -mean, /std), folded at 512x512: today is
  the original fed the raw frame, no CPU step;
- a bare ResNet-style network (7x7/s2 stem 3->64, ReLU, 3x3/s2 max pool, 3x3 conv 64->64, ReLU) at 1024x1224,
  folded with ``--gray --mean/--std/--scale`` three ways: at the camera size (static), dynamic H/W, and
  ``--border approx`` (not exact): today is numpy replicate + normalise to float32, then the original;
- with ``--ocr``, PaddleOCR's PP-OCRv4 text detector (the rapidocr wheel ``./run test`` downloads) at 1024x1024.

    python bench/pipeline.py [--threads 1] [--frames 15] [--ocr]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgefold.cli.main import main as edgefold  # noqa: E402
from edgefold.graph.builder import ModelBuilder  # noqa: E402

NORM = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--scale", "255"]


def resnet_block() -> onnx.ModelProto:
    b = ModelBuilder(seed=0)
    x = b.input("input", [1, 3, "h", "w"], np.float32)
    y = b.op("Relu", [b.conv(x, 3, 64, k=7, stride=2, name="stem")])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return b.model([b.op("Relu", [b.conv(y, 64, 64, k=3)])])


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = edgefold(list(argv))
    if code:
        raise SystemExit(f"edgefold {' '.join(argv)} exited {code}")
    return out.getvalue()


def row(name: str, text: str) -> None:
    lines = text.splitlines()
    ratio = next(line for line in lines if line.startswith("today / folded"))
    folded = next(line for line in lines if line.startswith("folded model"))
    cpu = next((line for line in lines if line.startswith("today: CPU step")), None)
    total = next(line for line in lines if line.startswith("today: total") or "no CPU step" in line)
    fields = lambda line: line.rsplit(maxsplit=2)[1]  # noqa: E731 - the median column
    print(f"| {name} | {fields(total)} | {fields(cpu) if cpu else 'none'} | {fields(folded)} | "
          f"{ratio.split(':')[1].split('(')[0].strip()} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--frames", default="15")
    ap.add_argument("--ocr", action="store_true")
    args = ap.parse_args()
    timing = ["--threads", args.threads, "--frames", args.frames, "--warmup", "3"]
    print("| model, fold | today ms | of which CPU step | folded ms | today / folded |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        from edgefold.demo import demo_model

        demo, demo_f = Path(tmp, "demo_classifier.onnx"), Path(tmp, "demo_classifier.folded.onnx")
        onnx.save(demo_model(), str(demo))
        run_cli("fold", str(demo), "-o", str(demo_f), "--input-size", "512x512", "-q")
        row("demo classifier (preprocesses in its graph), 512x512", run_cli("bench", str(demo_f), "--baseline",
                                                                             str(demo), *timing))
        bare = Path(tmp, "bare.onnx")
        onnx.save(resnet_block(), str(bare))
        for name, flags in (("static (`--input-size 1024x1224`)", ["--input-size", "1024x1224"]),
                            ("dynamic H/W", []), ("`--border approx` (not exact)", ["--border", "approx"])):
            out = Path(tmp, "bare.gray.onnx")
            run_cli("fold", str(bare), "-o", str(out), "--gray", *NORM, "--input-dtype", "uint8", "-q", *flags)
            row(f"ResNet-style block, bare, {name}, 1024x1224",
                run_cli("bench", str(out), "--baseline", str(bare), "--gray", *NORM, "--size", "1024x1224", *timing))
        if args.ocr:
            import zipfile

            wheel = sorted(Path(__file__).resolve().parents[1].glob(".cache/wheels/rapidocr_onnxruntime-1.4.4-*.whl"))
            if not wheel:
                raise SystemExit("run `./run test` once first: it downloads the rapidocr wheel")
            det, det_f = Path(tmp, "det.onnx"), Path(tmp, "det.gray.onnx")
            with zipfile.ZipFile(wheel[0]) as z:
                det.write_bytes(z.read("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"))
            half = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--scale", "255"]
            run_cli("fold", str(det), "-o", str(det_f), "--gray", *half, "--input-dtype", "uint8", "-q",
                    "--input-size", "1024x1024")
            row("PP-OCRv4 det, bare, static, 1024x1024",
                run_cli("bench", str(det_f), "--baseline", str(det), "--gray", *half, *timing))


if __name__ == "__main__":
    main()
