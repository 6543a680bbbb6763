"""``edgefold compare ORIGINAL CANDIDATE``: Polygraphy comparison against the original 3-channel graph."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgefold.cli.flags import add_camera_flags, add_floor_flag, existing_file, size
from edgefold.errors import EXIT_MISMATCH, EXIT_OK


def _tol(text: str) -> tuple[str, float]:
    name, _, value = text.rpartition("=")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VALUE or OUTPUT=VALUE, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare a folded model or engine against the original graph",
                       description="The reference is the original graph in onnxruntime at fp32; the candidate is "
                       "an ONNX model (onnxruntime) or a TensorRT engine (Polygraphy's TensorRT runner). Each gets "
                       "its own feed from the same raw frames. fp32/fp16: a frame passes within the fixed bound or "
                       "within 10x the original's own float32 noise floor there. Exit 0 pass, 1 mismatch, 2 usage, "
                       "3 unsupported, 4 no TensorRT.")
    p.add_argument("reference", type=existing_file, help="the original ONNX model")
    p.add_argument("candidate", type=existing_file, help="folded ONNX model or TensorRT .engine (with its .json sidecar)")
    add_camera_flags(p)
    p.add_argument("--images", help="folder of PNG/JPEG/PGM/NPY frames (resized to a static input size)")
    p.add_argument("--random", type=int, metavar="N", help="N random frames; default 4 without --images, 0 with "
                   "(black, white, edges and a page are always added)")
    p.add_argument("--size", type=size, metavar="HxW", help="frame size for dynamic models (default 160x224)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="tolerance set (default: detected)")
    p.add_argument("--atol", type=_tol, action="append", metavar="[OUT=]V", help="absolute tolerance override")
    p.add_argument("--rtol", type=_tol, action="append", metavar="[OUT=]V",
                   help="tolerance relative to max |reference| of the output")
    p.add_argument("--map-threshold", type=float, help="threshold for dense-map agreement (default: mid-range)")
    add_floor_flag(p)
    p.add_argument("--report", help="write the comparison as JSON here")
    p.add_argument("--heatmap", help="write a PNG of where the error lives (the worst spatial output; skipped with a "
                   "note when there is none)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgefold.compare import CompareOptions, compare
    from edgefold.compare.heatmap import heatmap_for
    from edgefold.graph.outputs import RunOutputs

    outputs = RunOutputs()
    outputs.protect_model(args.reference)
    outputs.protect_model(args.candidate)
    if args.candidate.endswith((".engine", ".plan", ".trt")):  # as compare() reads them: NAME.json beside
        outputs.protect(str(Path(args.candidate).with_suffix(".json")), "the engine's sidecar")
    outputs.protect(args.images, "an input image")
    outputs.claim(args.report, "--report")
    outputs.claim(args.heatmap, "--heatmap")
    options = CompareOptions(channels=args.channels, mean=args.mean, std=args.std, scale=args.scale,
                             images=args.images, random=args.random, size=args.size, precision=args.precision,
                             atol=dict(args.atol or []), rtol=dict(args.rtol or []), map_threshold=args.map_threshold,
                             floors=args.accuracy_floor or {})
    result = compare(args.reference, args.candidate, options)
    print(result.to_text())
    heatmap = heatmap_for(result) if args.heatmap else None
    with outputs:
        if args.report:
            outputs.stage_text(args.report, result.dumps())
        if heatmap is not None:
            outputs.stage_bytes(args.heatmap, heatmap[1])
    if heatmap is not None:
        print(f"heatmap of '{heatmap[0]}' written to {args.heatmap}", file=sys.stderr)
    elif args.heatmap:
        print(f"no heatmap written to {args.heatmap}: the models have no spatial (N, C, H, W) output to draw",
              file=sys.stderr)
    return EXIT_OK if result.passed else EXIT_MISMATCH
