"""``edgefold infer MODEL|ENGINE IMAGE...``: raw frames in, outputs printed (top-k for classifiers) or saved."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from edgefold.cli.flags import size as size_arg
from edgefold.errors import EXIT_OK, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="run a folded model or engine on images",
                       description="Feeds each image as raw pixels, as the model's input contract says (gray or "
                       "colour, uint8 or float), and prints the outputs: top-k for classifier-shaped outputs, "
                       "shape and range for maps. Engines need TensorRT and their NAME.json sidecar.")
    p.add_argument("model", help="folded .onnx (onnxruntime, CPU) or .engine (TensorRT)")
    p.add_argument("images", nargs="+", help="PNG/JPEG/PGM/... or .npy frames; .raw/.bin camera buffers for a model "
                   "folded with --pixel-format")
    p.add_argument("--top", type=int, default=5, help="top-k classes to print (default 5)")
    p.add_argument("--resize", action="store_true", help="resize images to a static model input size")
    p.add_argument("--size", type=size_arg, metavar="HxW",
                   help="buffer size of .raw frames for a model with a dynamic input (a 4:2:0 buffer: (3H/2)xW)")
    p.add_argument("--out", help="folder to write IMAGE.OUTPUT.npy files and outputs.json")
    p.set_defaults(run=run)


def describe(name: str, value: np.ndarray, top: int) -> str:
    from edgefold.core.metrics import is_classifier

    if is_classifier(value.shape):
        scores = value.reshape(value.shape[0], -1)[0]
        order = np.argsort(-scores)[:top]
        return f"  {name}: top-{len(order)} " + ", ".join(f"{int(i)}={scores[i]:.4g}" for i in order)
    return (f"  {name}: shape {list(value.shape)}, min {value.min():.4g}, max {value.max():.4g}, "
            f"mean {value.mean():.4g}")


def run(args: argparse.Namespace) -> int:
    from edgefold.core.frames import read_image, read_raw
    from edgefold.graph.outputs import RunOutputs
    from edgefold.runtime import Engine

    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: output folder does not exist")
    outputs = RunOutputs()
    outputs.protect_model(args.model)
    for path in args.images:
        outputs.protect(path, f"the input image {path}")
    summary = {}
    with outputs, Engine(args.model) as engine:
        size = engine.contract.static_size()
        fmt = engine.contract.pixel_format
        for path in args.images:
            if Path(path).suffix.lower() in (".raw", ".bin"):
                if fmt is None:
                    raise UsageError(f"{path}: raw frames need a model folded with --pixel-format")
                frame = read_raw(path, fmt, size or args.size)
            else:
                frame = read_image(path, engine.contract.channels, size, args.resize)
            result = engine.infer(frame)
            print(f"{path} ({engine.backend_name}):")
            for name, value in result.items():
                print(describe(name, value, args.top))
                if out_dir is not None:
                    target = out_dir / f"{Path(path).stem}.{name.replace('/', '_')}.npy"
                    outputs.claim(target, "--out")
                    buf = io.BytesIO()
                    np.save(buf, value)
                    outputs.stage_bytes(target, buf.getvalue())
            summary[path] = {n: {"shape": list(v.shape), "min": float(v.min()), "max": float(v.max())}
                             for n, v in result.items()}
        if out_dir is not None:
            outputs.claim(out_dir / "outputs.json", "--out")
            outputs.stage_text(out_dir / "outputs.json", json.dumps(summary, indent=2))
    return EXIT_OK
