"""``edgefold infer MODEL|ENGINE IMAGE...``: raw frames in, outputs printed (top-k for classifiers) or saved."""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from edgefold.cli.flags import existing_file, positive_int
from edgefold.cli.flags import size as size_arg
from edgefold.errors import EXIT_OK, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="run a folded model or engine on images",
                       description="Feeds each image as raw pixels, as the model's input contract says (gray or "
                       "colour, uint8 or float), and prints the outputs: top-k for classifier-shaped outputs, "
                       "shape and range for maps. Engines need TensorRT and their NAME.json sidecar.")
    p.add_argument("model", type=existing_file, help="folded .onnx (onnxruntime, CPU) or .engine (TensorRT)")
    p.add_argument("images", nargs="+", help="PNG/JPEG/PGM/... or .npy frames; .raw/.bin camera buffers for a model "
                   "folded with --pixel-format. A model with several camera inputs takes one image per input, in "
                   "the order of its inputs (left.png right.png)")
    p.add_argument("--top", type=positive_int, default=5, help="top-k classes to print (default 5)")
    p.add_argument("--resize", action="store_true", help="resize images to a static model input size")
    p.add_argument("--size", type=size_arg, metavar="HxW",
                   help="buffer size of .raw frames for a model with a dynamic input (a 4:2:0 buffer: (3H/2)xW)")
    p.add_argument("--out", help="folder to write IMAGE.OUTPUT.npy files and outputs.json (created if missing)")
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
    from edgefold.graph.outputs import RunOutputs
    from edgefold.runtime import Engine

    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: not a folder")
    outputs = RunOutputs(make_folders=True)  # a missing --out folder is created, as build does
    outputs.protect_model(args.model)
    for path in args.images:
        outputs.protect(path, f"the input image {path}")
    summary = {}
    with outputs, Engine(args.model) as engine:
        cameras = engine.contracts
        if engine.side_inputs:
            raise UsageError(f"{args.model}: input {', '.join(repr(n) for n in engine.side_inputs)} is not a camera "
                             f"frame; feed it from Python: Engine(...).infer({{name: array, ...}})")
        if len(args.images) % len(cameras):
            raise UsageError(f"{args.model} takes {len(cameras)} camera inputs ({', '.join(c.name for c in cameras)}): "
                             f"give images in groups of {len(cameras)}, one per input in that order; got "
                             f"{len(args.images)}")
        for start in range(0, len(args.images), len(cameras)):
            group = args.images[start:start + len(cameras)]
            result = engine.infer({c.name: _frame(path, c, args) for c, path in zip(cameras, group)})
            label = " + ".join(group)
            print(f"{label} ({engine.backend_name}):")
            for name, value in result.items():
                print(describe(name, value, args.top))
                if out_dir is not None:
                    target = out_dir / f"{Path(group[0]).stem}.{name.replace('/', '_')}.npy"
                    outputs.claim(target, "--out")
                    buf = io.BytesIO()
                    np.save(buf, value)
                    outputs.stage_bytes(target, buf.getvalue())
            summary[label] = {n: {"shape": list(v.shape), "min": float(v.min()), "max": float(v.max())}
                              for n, v in result.items()}
        if out_dir is not None:
            outputs.claim(out_dir / "outputs.json", "--out")
            outputs.stage_text(out_dir / "outputs.json", json.dumps(summary, indent=2))
    return EXIT_OK


def _frame(path: str, contract, args: argparse.Namespace) -> np.ndarray:  # noqa: ANN001 - an InputContract
    from edgefold.core.frames import read_image, read_raw

    size = contract.static_size()
    if Path(path).suffix.lower() in (".raw", ".bin"):
        fmt = contract.pixel_format
        if fmt is None or fmt.name in ("gray", "rgb", "bgr"):
            raise UsageError(f"{path}: .raw/.bin camera buffers need a model folded with --pixel-format; give "
                             f"an image file (PNG, JPEG, PGM, .npy)")
        return read_raw(path, fmt, size or args.size)
    return read_image(path, contract.channels, size, args.resize)
