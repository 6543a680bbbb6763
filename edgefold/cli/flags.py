"""Flags several verbs share, defined once: what the camera gives and the normalisation a model expects."""
from __future__ import annotations

import argparse
import math


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive(text: str) -> float:
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 480x640, got {text!r}") from None
    if h < 1 or w < 1 or h * w > 1 << 26:
        raise argparse.ArgumentTypeError(f"frame size {text} out of range")
    return h, w


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on; 0 is any free one."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1..65535 (0: any free one), got {text!r}")
    return value


def existing_file(text: str) -> str:
    """A model, engine or frame that must exist: every verb says the same thing when it does not (exit 2),
    before it needs TensorRT or anything else."""
    import os

    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{text}: no such file" if not os.path.isdir(text) else
                                         f"{text} is a folder, not a file")
    return text


def add_camera_flags(p: argparse.ArgumentParser, compose: bool = False) -> None:
    """--gray/--rgb/--bgr and --mean/--std/--scale, with the meaning ``edgefold fold`` gives them (and
    --compose where a fold happens)."""
    order = p.add_mutually_exclusive_group()
    order.add_argument("--gray", dest="channels", action="store_const", const="gray",
                       help="the camera gives 1-channel gray pixels (replicated for a 3-channel model)")
    order.add_argument("--rgb", dest="channels", action="store_const", const="rgb",
                       help="the camera gives 3 channels in the model's own order")
    order.add_argument("--bgr", dest="channels", action="store_const", const="bgr",
                       help="the camera gives 3 channels in reversed (BGR) order")
    p.add_argument("--mean", type=floats, help="per-channel mean a bare model expects, e.g. 0.485,0.456,0.406")
    p.add_argument("--std", type=floats, help="per-channel std, e.g. 0.229,0.224,0.225")
    p.add_argument("--scale", type=finite, help="pixel divisor before mean/std, e.g. 255")
    if compose:
        p.add_argument("--compose", action="store_true",
                       help="the model expects --mean/--std-normalised input and re-normalises it in its graph "
                       "(torchvision's transform_input): fold both, and print the composed map")


def accuracy_floor(text: str) -> dict[str, float]:
    from edgefold.compare.tolerance import Floors
    from edgefold.errors import UsageError

    try:
        return Floors.parse(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err).replace("--accuracy-floor expects ", "expected ")) from None


def add_floor_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accuracy-floor", type=accuracy_floor, metavar="KEY=V[,KEY=V]",
                   help="task floors: top1 (agreement, seen and estimated from the margins), iou (mean over "
                   "frames with positives), fp (false-positive pixel rate on frames without), cosine (other "
                   "outputs); e.g. iou=0.95,fp=0.005")


def add_yuv_flag(p: argparse.ArgumentParser) -> None:
    from edgefold.core.yuv import MATRICES

    p.add_argument("--yuv", choices=tuple(MATRICES), default="bt601-limited",
                   help="the YUV->RGB matrix of NV12/NV21/I420/YUYV/UYVY (default bt601-limited, OpenCV's "
                   "cvtColor coefficients)")


def add_fold_flags(p: argparse.ArgumentParser) -> None:
    """The fold's own flags beyond the camera's (``edgefold fold`` and ``edgefold build`` take the same)."""
    p.add_argument("--input-dtype", choices=("uint8", "float32"),
                   help="type of the new input (default: the original input's type)")
    p.add_argument("--input-name", help="name of the new input (default: the original name)")
    p.add_argument("--border", choices=("exact", "approx"), default="exact",
                   help="approx drops the border correction and reports the error it leaves")
    p.add_argument("--input-size", type=size, metavar="HxW",
                   help="fix the height and width of a dynamic model first (one camera resolution: the "
                   "folded model gets the fastest exact border scheme)")
    p.add_argument("--report", help="write the fold report as JSON here")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime self-check")
    p.add_argument("--verify-size", type=size, action="append", metavar="HxW",
                   help="frame size for the self-check of dynamic models (repeatable; default 67x93 and "
                   "128x160, then 96x128 and 160x224 if the model rejects those)")


def fold_options(args: argparse.Namespace, **overrides):  # noqa: ANN201 - a FoldOptions
    """FoldOptions from the camera and fold flags."""
    from edgefold.folding.options import FoldOptions

    values = dict(channels=args.channels, mean=args.mean, std=args.std, scale=args.scale, compose=args.compose,
                  input_dtype=args.input_dtype, input_name=args.input_name, border=args.border,
                  input_size=args.input_size, verify=not args.no_verify,
                  verify_sizes=tuple(args.verify_size) if args.verify_size else None)
    return FoldOptions(**{**values, **overrides})
