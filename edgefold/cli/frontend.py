"""``edgefold frontend dct``: raw pixels -> 8x8 block-DCT coefficients as one convolution, standalone or
prepended to (and merged into) a DCT-domain model."""
from __future__ import annotations

import argparse

import numpy as np

from edgefold.errors import EXIT_OK, VerificationFailed


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
    from edgefold.frontend.graph import frontend_model, prepend
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
    err = check_prepended(original, model, spec, args.input_dtype)
    with outputs:
        outputs.stage_model(args.output, model)
    print(f"{args.model}: raw {spec.raw_channels}-channel pixels in; {merged}; max |difference| from running "
          f"the front end and the model separately: {err:.3g} of max |output|; wrote {args.output}")
    return EXIT_OK


def check_prepended(original, model, spec, dtype: str, tolerance: float = 1e-4) -> float:  # noqa: ANN001
    """Run (front end -> original) and the merged model on the same frames in onnxruntime."""
    from edgefold.backends.ort import session
    from edgefold.frontend.graph import frontend_model

    front = frontend_model(spec, "image", "float32")
    s_front, s_orig, s_new = session(front), session(original), session(model)
    dims = original.graph.input[0].type.tensor_type.shape.dim
    h8 = dims[2].dim_value or 12
    w8 = dims[3].dim_value or 16
    rng = np.random.default_rng(0)
    worst = 0.0
    for frame in (rng.integers(0, 256, (1, spec.raw_channels, 8 * h8, 8 * w8)), np.zeros((1, spec.raw_channels,
                  8 * h8, 8 * w8)), np.full((1, spec.raw_channels, 8 * h8, 8 * w8), 255)):
        coef = s_front.run(None, {"image": frame.astype(np.float32)})[0]
        ref = s_orig.run(None, {original.graph.input[0].name: coef})
        got = s_new.run(None, {model.graph.input[0].name: frame.astype(dtype)})
        for r, g in zip(ref, got):
            worst = max(worst, float(np.abs(r - g).max()) / max(float(np.abs(r).max()), 1e-12))
    if worst > tolerance:
        raise VerificationFailed(f"the merged model differs from front end + model by {worst:.3g} of max |output|; "
                                 f"nothing written")
    return worst
