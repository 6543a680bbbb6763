"""``edgefold fold MODEL -o OUT``: remove the input preprocessing, write the folded model and a report."""
from __future__ import annotations

import argparse

from edgefold.cli.flags import add_camera_flags, add_fold_flags, add_yuv_flag, fold_options
from edgefold.errors import EXIT_OK, VerificationFailed


def add_parser(sub) -> None:
    p = sub.add_parser("fold", help="fold input preprocessing into the first convolution(s)",
                       description="Find the preprocessing between a graph input and the first Conv(s) "
                       "(Cast, gray->3 replication, /255, -mean, /std, channel flips, ...) and fold it into "
                       "the convolution, exactly, borders included. For a bare 3-channel model, declare what "
                       "it expects with --gray --mean --std --scale.")
    p.add_argument("model", help="ONNX model")
    p.add_argument("-o", "--output", required=True, help="folded ONNX model to write")
    add_camera_flags(p, compose=True)
    p.add_argument("--pixel-format", metavar="PFNC",
                   help="the camera's own buffer as the input, by GenICam name: Mono8/10/12/16, BayerRG8/BG8/GR8/GB8 "
                   "and 10/12/16 (bilinear demosaic as OpenCV's cvtColor without its rounding), NV12/NV21/I420, "
                   "YUV422_8 (YUYV), YUV422_8_UYVY, RGB8, BGR8; composed into an even-stride stem conv")
    add_yuv_flag(p)
    add_fold_flags(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(run=run)


def _camera_format(args: argparse.Namespace):  # noqa: ANN202 - a PixelFormat or None
    """--pixel-format: Mono8/RGB8/BGR8 are --gray/--rgb/--bgr; the others get a front end after the fold, which
    then folds for gray (Mono10-16) or RGB (Bayer) float32 pixels in the 8-bit range."""
    from edgefold.core.contract import pixel_format
    from edgefold.errors import UsageError

    if args.pixel_format is None:
        return None
    fmt = pixel_format(args.pixel_format)
    if fmt.chroma:
        import dataclasses

        fmt = dataclasses.replace(fmt, yuv=args.yuv)
    wanted = fmt.fold_order
    if args.channels not in (None, wanted):
        raise UsageError(f"--pixel-format {fmt.genicam} is a {wanted} camera; drop --{args.channels}")
    args.channels = wanted
    if fmt.bits == 8 and fmt.per_pixel:  # Mono8 / RGB8 / BGR8: the ordinary fold, reading the camera's uint8
        args.input_dtype = args.input_dtype or "uint8"
        return None
    if args.input_dtype not in (None, "float32"):
        raise UsageError(f"--pixel-format {fmt.genicam}: the engine input is {fmt.dtype}; drop --input-dtype")
    args.input_dtype = "float32"
    return fmt


def _written(folded, summary: str | None) -> dict:  # noqa: ANN001 - an onnx.ModelProto
    """What the report says about the model written when a camera format was composed after the fold."""
    if summary is None:
        return {}
    from edgefold.core.contract import Meta, contracts_of, meta_json

    return {"inputs": contracts_of(folded), "front_end": {**meta_json(folded, Meta.FRONTEND, {}), "summary": summary}}


def run(args: argparse.Namespace) -> int:
    from edgefold.folding import fold
    from edgefold.graph.outputs import RunOutputs

    fmt = _camera_format(args)
    options = fold_options(args, camera=fmt.genicam if fmt is not None else None)
    outputs = RunOutputs()
    outputs.protect_model(args.model)
    outputs.claim_model(args.output, "-o")
    outputs.claim(args.report, "--report")
    with outputs:
        try:
            folded, report = fold(args.model, options)
            if fmt is not None:
                from edgefold.frontend.pixels import attach_checked

                folded, front = attach_checked(folded, fmt, options.verify, options.verify_sizes, args.model)
        except VerificationFailed as err:
            if args.report and err.report is not None:  # the report says where it failed; the model is not written
                outputs.stage_text(args.report, err.report.dumps())  # type: ignore[attr-defined]
                outputs.commit()
            raise
        outputs.stage_model(args.output, folded)
        if args.report:  # the model written: with a camera format, its contract and the front end composed
            outputs.stage_text(args.report, report.dumps(**_written(folded, front if fmt is not None else None)))
    if not args.quiet:
        from edgefold.core.contract import contracts_of

        print(report.to_text(inputs=contracts_of(folded), composed=fmt.genicam if fmt is not None else None))
        if fmt is not None:
            print(front)
        print(f"wrote {args.output}" + (f" and {args.report}" if args.report else ""))
    return EXIT_OK
