"""What to build, as data: the options of ``edgefold build`` and the engine plan for one TensorRT major.

TensorRT 11 (desktop, JetPack >= 7.2.2) is strongly typed only: no precision flags, precision comes from
the ONNX (FP16 weights, Q/DQ nodes). TensorRT 8.5-10.x (JetPack 5/6) takes the same ONNX; strongly typed
networks are opt-in there (9.1+), and the FP16 builder flag on the fp32 ONNX is an option (``fp16_flag``).
Nothing here imports TensorRT; ``trt.py`` turns a plan into Polygraphy loaders.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
from dataclasses import dataclass, field

from edgefold.errors import UsageError
from edgefold.folding.options import FoldOptions

TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
HW_COMPAT = {"ampere+": "AMPERE_PLUS"}  # trtexec --hardwareCompatibilityLevel: none | ampere+
ENGINE_SUFFIXES = (".engine", ".plan")  # TensorRT users name serialized engines either way
DLA_ENDED = ("--dla with --trt-version 11: TensorRT 11.0-11.3 have no DLA (10.7 was the last 10.x with it; 11.4.1 "
             "brings it back for strongly typed networks); target --trt-version 10 (JetPack 6), or build on the Orin "
             "with TensorRT >= 11.4 installed and no --trt-version")


@dataclass(frozen=True)
class ShapeProfile:
    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def static(self) -> bool:
        return self.min == self.opt == self.max

    @staticmethod
    def parse(text: str) -> ShapeProfile:
        """``input:1x1x480x640/1x1x1080x1920/1x1x2048x2448`` (min/opt/max) or ``input:1x1x480x640``."""
        name, sep, dims = text.rpartition(":")
        parts = dims.split("/")
        try:
            shapes = [tuple(int(v) for v in p.lower().split("x")) for p in parts]
        except ValueError:
            shapes = []
        if not sep or not name or len(shapes) not in (1, 3) or len({len(s) for s in shapes}) != 1 \
                or any(v < 1 for s in shapes for v in s):
            raise UsageError(f"--shapes expects NAME:MIN/OPT/MAX like input:1x1x480x640/1x1x1080x1920/1x1x2048x2448, "
                             f"got {text!r}")
        if len(shapes) == 1:
            shapes *= 3
        lo, opt, hi = shapes
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise UsageError(f"--shapes {name}: need min <= opt <= max in every dimension")
        return ShapeProfile(name, lo, opt, hi)

    def trtexec(self) -> tuple[str, str, str]:
        f = lambda s: f"{self.name}:{'x'.join(map(str, s))}"
        return f(self.min), f(self.opt), f(self.max)


@dataclass(frozen=True)
class BuildOptions:
    output: str  # NAME.engine; companions are written next to it
    precision: str = "fp32"  # fp32 (trtexec's default too) | fp16 | int8
    calib: str | None = None
    calib_count: int = 300
    calib_method: str = "auto"  # auto (percentile and minmax, both measured) | percentile | minmax | entropy
    int8_strategy: str = "auto"  # auto | recentre | float-first
    shapes: tuple[ShapeProfile, ...] = ()
    fold: bool = True
    fold_options: FoldOptions = field(default_factory=FoldOptions)
    report: str | None = None  # the fold report as JSON (as fold's --report)
    engine: bool = True
    trt_major: int | None = None  # target TensorRT major; None: the installed one, else 10 (JetPack 6)
    fp16_flag: bool = False  # TRT <= 10: fp32 ONNX + FP16 builder flag instead of an FP16 ONNX
    timing_cache: str | None = None
    workspace_mib: int | None = None
    opt_level: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    hardware_compat: str | None = None  # ampere+
    version_compatible: bool = False
    accept_accuracy_drop: bool = False
    accuracy_floor: dict[str, float] = field(default_factory=dict)  # top1 / iou / fp / cosine overrides
    mixed_precision: bool = True  # INT8 below the floor: search which layers to keep in FP16
    keep_fp32: bool = False  # INT8: what is not quantised runs in FP32 (default FP16)
    search_budget_s: float = 600.0
    show_progress: bool = False
    pixel_format: str | None = None  # a camera format with a front end (Bayer, NV12, Mono12 ...), as fold's flag
    yuv: str = "bt601-limited"  # the YUV->RGB matrix of a YUV pixel format (fold's --yuv)
    deepstream: bool = False  # engine for nvinfer (float32 raw pixels in) + NAME.nvinfer.txt
    triton_repo: str | None = None  # write REPO/NAME/{config.pbtxt, 1/model.plan, edgefold.json}
    triton_onnx: bool = False  # and REPO/NAME_onnx with the folded fp32 model (onnxruntime_onnx)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"precision must be fp32, fp16 or int8, not {self.precision!r}")
        if self.precision == "int8" and not self.calib:
            raise UsageError("--int8 needs --calib (a folder of camera frames or an .npy stack)")
        if self.int8_strategy not in ("auto", "recentre", "float-first"):
            raise UsageError(f"--int8-strategy must be auto, recentre or float-first, not {self.int8_strategy!r}")
        if self.calib_method not in ("auto", "percentile", "minmax", "entropy"):
            raise UsageError(f"--calib-method must be auto, percentile, minmax or entropy, not {self.calib_method!r}")
        if self.keep_fp32 and self.precision != "int8":
            raise UsageError("--keep-fp32 is for --int8 (the layers kept out of INT8); use --fp32 for an FP32 engine")
        if not self.search_budget_s > 0:
            raise UsageError("--search-budget must be a positive number of seconds")
        if not self.output.endswith(ENGINE_SUFFIXES):
            raise UsageError(f"-o {self.output}: name the engine NAME.engine or NAME.plan (companions are NAME.*)")
        if self.fp16_flag and self.trt_major is not None and self.trt_major >= 11:
            raise UsageError("--fp16-flag: TensorRT 11 has no FP16 builder flag (strongly typed only)")
        if self.dla_core is not None and self.trt_major is not None and self.trt_major >= 11:
            raise UsageError(DLA_ENDED)
        if self.gpu_fallback and self.dla_core is None:
            raise UsageError("--gpu-fallback only applies with --dla N")
        if self.dla_core is not None and any(not p.static for p in self.shapes):
            raise UsageError("DLA does not allow dynamic shapes: give min = opt = max in --shapes")
        if self.deepstream and not self.fold:
            raise UsageError("--deepstream needs the fold (nvinfer would have to normalise, and cannot per channel); "
                             "drop --no-fold")
        if self.deepstream and self.fold_options.input_dtype == "uint8":
            raise UsageError("--deepstream: nvinfer feeds float32 pixels; drop --input-dtype uint8")
        if self.pixel_format and self.deepstream:
            raise UsageError("--pixel-format with --deepstream: nvinfer converts camera formats itself and feeds the "
                             "engine RGB/BGR/GRAY; drop one of them")
        if self.report and not self.fold:
            raise UsageError("--report is the fold's report; drop --no-fold or --report")
        if self.pixel_format and not self.fold:
            raise UsageError("--pixel-format needs the fold; drop --no-fold")
        if self.triton_onnx and not self.triton_repo:
            raise UsageError("--triton-onnx goes with --triton REPO")
        if self.hardware_compat is not None and self.hardware_compat not in HW_COMPAT:
            raise UsageError(f"--hardware-compat must be one of {', '.join(HW_COMPAT)}")

    @property
    def stem(self) -> str:
        return self.output[: self.output.rindex(".")]


@dataclass(frozen=True)
class EnginePlan:
    """Everything the TensorRT builder is told, for one TensorRT major version."""

    onnx_path: str
    engine_path: str
    trt_major: int
    strongly_typed: bool
    fp16_flag: bool  # weak typing only
    int8_flag: bool  # weak typing only (explicit Q/DQ needs it before strong typing)
    profiles: tuple[ShapeProfile, ...]
    timing_cache: str | None
    workspace_mib: int | None
    opt_level: int | None
    dla_core: int | None
    gpu_fallback: bool
    hardware_compat: str | None
    version_compatible: bool

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["profiles"] = [{"name": p.name, "min": p.min, "opt": p.opt, "max": p.max} for p in self.profiles]
        return d

    def trtexec_args(self) -> list[str]:
        args = [TRTEXEC, f"--onnx={self.onnx_path}", f"--saveEngine={self.engine_path}"]
        if self.trt_major < 11:
            if self.strongly_typed:
                args.append("--stronglyTyped")
            if self.fp16_flag:
                args.append("--fp16")
            if self.int8_flag:
                args.append("--int8")
        for p in self.profiles:
            lo, opt, hi = p.trtexec()
            args += [f"--minShapes={lo}", f"--optShapes={opt}", f"--maxShapes={hi}"]
        if self.timing_cache:
            args.append(f"--timingCacheFile={self.timing_cache}")
        if self.workspace_mib:
            args.append(f"--memPoolSize=workspace:{self.workspace_mib}")
        if self.opt_level is not None:
            args.append(f"--builderOptimizationLevel={self.opt_level}")
        if self.dla_core is not None:
            args.append(f"--useDLACore={self.dla_core}")
            if self.gpu_fallback:
                args.append("--allowGPUFallback")
        if self.hardware_compat:
            args.append(f"--hardwareCompatibilityLevel={self.hardware_compat}")
        if self.version_compatible:
            args.append("--versionCompatible")
        return args

    def trtexec_script(self) -> str:
        """The script runs in its own folder on the device: the timing cache is named by its file name there
        (never this host's absolute path), to be copied beside the script or created by trtexec."""
        cache = os.path.basename(self.timing_cache) if self.timing_cache else None
        args = dataclasses.replace(self, timing_cache=cache).trtexec_args()
        cmd = " \\\n    ".join(shlex.quote(a) for a in args)
        note = (f"# Timing cache: {cache} beside this script (copy it from the build host, or trtexec creates it).\n"
                if cache else "")
        return ("#!/usr/bin/env bash\n"
                f"# The trtexec equivalent of `edgefold build` for TensorRT {self.trt_major}.x, generated by edgefold.\n"
                "# Run it on the target device (engines are specific to the GPU and the TensorRT version).\n"
                f"{note}"
                'set -euo pipefail\ncd "$(dirname "$0")"\n'
                f"{cmd}\n")


def int8_rest_in_half(options: BuildOptions, trt_major: int) -> bool:
    """Whether an INT8 build writes all it does not quantise - the layers the search keeps out of INT8, the
    element-wise ops, activations, Resize, Concat ... between the Q/DQ pairs - in float16 in the ONNX: for a
    strongly typed TensorRT (11) the ONNX types are the precisions, so yes unless --keep-fp32 (ops that need
    float32 keep it, with Casts). On 10.x the ONNX stays float32 and TensorRT's FP16 flag (set with INT8 unless
    --keep-fp32) lets it pick FP16."""
    return options.precision == "int8" and trt_major >= 11 and not options.keep_fp32


def kept_precision(options: BuildOptions) -> str:
    return "FP32" if options.keep_fp32 else "FP16"


def plan_engine(options: BuildOptions, onnx_path: str, engine_path: str, trt_major: int) -> EnginePlan:
    """TensorRT 11: strongly typed, no flags - precision comes from the ONNX (FP16 weights, Q/DQ), and the
    layers Q/DQ leaves unquantised run in fp32. TensorRT 8.5-10.x: weak typing with the Q/DQ ONNX plus the
    INT8 and FP16 flags (explicit quantisation; the builder may run the rest in fp16), the FP16 ONNX with
    strong typing on 10.x (or the FP16 flag: ``--fp16-flag``, or 8.x/9.x), fp32 without flags. DLA (FP16 and
    INT8 only, strongly typed networks only from 11.4.1) always gets weak typing with the FP16 flag there."""
    strongly_typed = trt_major >= 11 or (trt_major == 10 and options.precision == "fp16" and not options.fp16_flag
                                         and options.dla_core is None)  # DLA before 11.4: weak typing only
    weak = not strongly_typed
    return EnginePlan(
        onnx_path=onnx_path, engine_path=engine_path, trt_major=trt_major, strongly_typed=strongly_typed,
        fp16_flag=weak and (options.precision == "fp16" or (options.precision == "int8" and not options.keep_fp32)
                            or options.dla_core is not None),
        int8_flag=weak and options.precision == "int8",
        profiles=options.shapes, timing_cache=options.timing_cache, workspace_mib=options.workspace_mib,
        opt_level=options.opt_level, dla_core=options.dla_core, gpu_fallback=options.gpu_fallback,
        hardware_compat=options.hardware_compat, version_compatible=options.version_compatible)
