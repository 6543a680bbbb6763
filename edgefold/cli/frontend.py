"""``edgefold frontend dct``: raw pixels -> 8x8 block-DCT coefficients as one convolution, standalone or
prepended to (and merged into) a DCT-domain model."""
from __future__ import annotations

import argparse

from edgefold.errors import EXIT_OK


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("frontend", help="pixel front ends (8x8 block DCT) as ONNX",
                       description="Emit a DCT front end (gray -> Y, or RGB -> YCbCr, JPEG level shift, orthonormal "
                       "8x8 DCT-II, coefficient selection) as one stride-8 convolution; with --model, prepend it to "
                       "a DCT-domain model and merge it into the model's first layer when that is linear.")
    kinds = p.add_subparsers(dest="kind", required=True)
    d = kinds.add_parser("dct", help="8x8 block DCT (DCTNet-style inputs)",
                         description="Raw pixels -> 8x8 block-DCT coefficients as one stride-8 convolution, written "
                         "alone or, with --model, prepended to a DCT-domain model (merged into its first layer when "
                         "that is linear).")
    d.add_argument("-o", "--output", required=True, help="ONNX model to write (the front end, or it and --model)")
    d.add_argument("--model", help="a DCT-domain model (input N x C x H/8 x W/8) to take raw pixels instead")
    d.add_argument("--components", choices=("y", "ycbcr"), default="y", help="y: gray input; ycbcr: RGB input")
    d.add_argument("--order", choices=("zigzag", "rowmajor"), default="zigzag", help="coefficient index order")
    sel = d.add_mutually_exclusive_group()
    sel.add_argument("--select", type=_ints, help="output channels by index (component-major: comp*64 + index)")
    sel.add_argument("--select-low", type=int, metavar="N", help="the N lowest zig-zag coefficients per component")
    d.add_argument("--no-level-shift", action="store_true", help="do not subtract 128 before the DCT")
    d.add_argument("--input-dtype", choices=("uint8", "float32"), default="uint8",
                   help="type of the pixel input (default uint8; uint8 puts a Cast in the graph)")
    d.add_argument("--input-name", help="name of the pixel input (default: image, or the model's input name)")
    p.set_defaults(run=run)
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgefold.frontend.dct import DctSpec
    from edgefold.frontend.graph import check_prepended, frontend_model, prepend
    from edgefold.graph.io import load_model
    from edgefold.graph.outputs import RunOutputs

    outputs = RunOutputs()
    outputs.protect_model(args.model)
    outputs.claim_model(args.output, "-o")
    spec = DctSpec(components=args.components, order=args.order, select=args.select, select_low=args.select_low,
                   level_shift=not args.no_level_shift)
    n = len(spec.channels())
    if not args.model:
        model = frontend_model(spec, args.input_name or "image", args.input_dtype)
        with outputs:
            outputs.stage_model(args.output, model)
        print(f"DCT front end: {spec.raw_channels}-channel {args.input_dtype} pixels -> {n} coefficient channels "
              f"({spec.components}, {spec.order}) as one 8x8/s8 conv; wrote {args.output}")
        return EXIT_OK
    original = load_model(args.model)
    model, merged = prepend(original, spec, args.input_name, args.input_dtype)
    checked = check_prepended(original, model, spec, args.input_dtype)
    with outputs:
        outputs.stage_model(args.output, model)
    print(f"{args.model}: raw {spec.raw_channels}-channel pixels in; {merged}; checked against running the front "
          f"end and the model separately: {checked.worst_text()}; wrote {args.output}")
    return EXIT_OK
