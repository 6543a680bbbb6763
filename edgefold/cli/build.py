"""``edgefold build MODEL -o NAME.engine``: fold, FP16/INT8 preparation verified on the CPU, engine build."""
from __future__ import annotations

import argparse
import sys

from edgefold.cli.flags import add_camera_flags, add_floor_flag, add_fold_flags, add_yuv_flag, finite, fold_options
from edgefold.errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="fold, prepare FP16/INT8 on the CPU, build a TensorRT engine",
                       description="Folds the preprocessing (unless --no-fold or already folded), prepares an FP16 "
                       "or INT8 Q/DQ ONNX and proves it in onnxruntime against the fp32 model, then builds the "
                       "engine through Polygraphy for the installed TensorRT (11: strongly typed; 8.5-10: the same "
                       "ONNX). Writes NAME.engine, NAME.prepared.onnx, NAME.json, NAME.trtexec.sh.")
    p.add_argument("model", help="ONNX model")
    p.add_argument("-o", "--output", required=True, help="NAME.engine or NAME.plan")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 engine")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8", help="INT8 engine (Q/DQ)")
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                      help="FP32 engine (the default without a precision flag, as trtexec's)")
    p.add_argument("--calib", help="calibration frames: a folder of images or an .npy stack (needed for --int8)")
    p.add_argument("--calib-count", type=int, default=300, help="use at most N calibration frames (default 300)")
    p.add_argument("--calib-method", choices=("auto", "percentile", "minmax", "entropy"), default="auto",
                   help="activation calibrator; auto measures percentile and minmax (with each --int8-strategy) and "
                   "keeps, among those meeting the floor, the one with the most INT8 MACs, then the higher score: the "
                   "mean over outputs of the task figures on the held-out frames (top-1 agreement, map IoU, 1 - 10 x "
                   "false-positive rate; cosine, else 1 - max rel error, where an output has none)")
    p.add_argument("--int8-strategy", choices=("auto", "recentre", "float-first"), default="auto",
                   help="first conv: re-centred lossless int8 input, or kept in float; auto measures both")
    p.add_argument("--shapes", action="append", metavar="NAME:MIN/OPT/MAX",
                   help="shape profile, e.g. input:1x1x480x640/1x1x1080x1920/1x1x2048x2448")
    p.add_argument("--no-fold", action="store_true", help="build the model as it is")
    add_camera_flags(p, compose=True)
    add_fold_flags(p)
    p.add_argument("--pixel-format", metavar="PFNC", help="as for fold: the engine reads the camera's buffer "
                   "(BayerRG8 ..., NV12/NV21/I420, YUV422_8, Mono10/12/16); calibration frames are raw buffers")
    add_yuv_flag(p)
    p.add_argument("--no-engine", action="store_true", help="write everything but the engine (no TensorRT needed)")
    p.add_argument("--trt-version", type=int, choices=(8, 9, 10, 11), help="target TensorRT major (default: installed, "
                   "else 10 as on JetPack 6)")
    p.add_argument("--fp16-flag", action="store_true", help="TensorRT <= 10: fp32 ONNX + the FP16 builder flag")
    p.add_argument("--timing-cache", help="timing cache file (loaded and updated)")
    p.add_argument("--workspace", type=int, metavar="MiB", help="builder workspace limit")
    p.add_argument("--opt-level", type=int, choices=range(0, 6), help="builder optimisation level (default 3)")
    p.add_argument("--dla", type=int, metavar="CORE", help="build for DLA core N (Orin: 0 or 1)")
    p.add_argument("--gpu-fallback", action="store_true", help="with --dla: let unsupported layers run on the GPU")
    p.add_argument("--hardware-compat", choices=("ampere+",), help="engine portable across Ampere and newer GPUs")
    p.add_argument("--version-compatible", action="store_true", help="engine loadable by later TensorRT versions")
    p.add_argument("--accept-accuracy-drop", action="store_true", help="write the result even below the floor")
    add_floor_flag(p)
    p.add_argument("--no-mixed-precision", action="store_true",
                   help="INT8 below the floor: fail instead of searching which layers to keep in FP16")
    p.add_argument("--keep-fp32", action="store_true",
                   help="INT8: what is not quantised (the layers kept out of INT8, the ops between Q/DQ pairs) runs in "
                   "FP32 (default FP16: written in float16 for TensorRT 11, the FP16 flag on 10.x)")
    p.add_argument("--search-budget", type=finite, default=600.0, metavar="SECONDS",
                   help="time limit of the mixed-precision search (default 600)")
    deploy = p.add_argument_group("deployment targets")
    deploy.add_argument("--deepstream", action="store_true",
                        help="engine for DeepStream's nvinfer (float32 raw pixels in) and NAME.nvinfer.txt")
    deploy.add_argument("--triton", metavar="REPO", help="a Triton model repository entry: REPO/NAME/config.pbtxt, "
                        "1/model.plan, edgefold.json")
    deploy.add_argument("--triton-onnx", action="store_true",
                        help="with --triton: also REPO/NAME_onnx (onnxruntime_onnx, the folded fp32 model) for CPU nodes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgefold.deploy.pipeline import build
    from edgefold.deploy.spec import BuildOptions, ShapeProfile
    from edgefold.runtime.makers import installed_maker

    options = BuildOptions(
        output=args.output, precision=args.precision or "fp32", calib=args.calib, calib_count=args.calib_count,
        calib_method=args.calib_method, int8_strategy=args.int8_strategy,
        shapes=tuple(ShapeProfile.parse(s) for s in args.shapes or []), fold=not args.no_fold,
        fold_options=fold_options(args), report=args.report,
        engine=not args.no_engine, trt_major=args.trt_version, fp16_flag=args.fp16_flag,
        timing_cache=args.timing_cache, workspace_mib=args.workspace, opt_level=args.opt_level, dla_core=args.dla,
        gpu_fallback=args.gpu_fallback, hardware_compat=args.hardware_compat,
        version_compatible=args.version_compatible, accept_accuracy_drop=args.accept_accuracy_drop,
        accuracy_floor=args.accuracy_floor or {}, mixed_precision=not args.no_mixed_precision,
        keep_fp32=args.keep_fp32,
        search_budget_s=args.search_budget, deepstream=args.deepstream, pixel_format=args.pixel_format,
        yuv=args.yuv,
        triton_repo=args.triton, triton_onnx=args.triton_onnx,
        show_progress=sys.stderr.isatty())  # a bar in a log file is one line per update
    result = build(args.model, options, None if args.no_engine else installed_maker())
    print(result.to_text())
    return EXIT_OK
