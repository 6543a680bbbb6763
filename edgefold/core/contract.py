"""The input contract: what a folded model or an engine takes from the camera, and the metadata that carries it.

One ``InputContract`` per folded input, with its JSON form (the model's ``edgefold.input_contracts``, the
engine sidecar's ``input_contract``, read by ``Engine`` and the C++ sample); one ``PixelFormat`` object per
camera format, which knows its raw buffer, its reference conversion to the model's channels and how a frame
file becomes a raw frame. Every ``edgefold.*`` metadata key is defined here once.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgefold.errors import UsageError


class Meta:
    """The ``edgefold.*`` keys of a folded or prepared model's ``metadata_props``."""

    VERSION = "edgefold.version"
    # nodes are recorded by their first output tensor: node names are optional and may repeat
    FOLDED_CONVS = "edgefold.folded_convs"  # JSON list: the output of each rewritten conv
    INPUT_CONTRACTS = "edgefold.input_contracts"  # JSON list of InputContract.to_json()
    SOURCE_INPUTS = "edgefold.source_inputs"  # JSON list: how the original input receives a raw frame
    RAW_TENSORS = "edgefold.raw_tensors"  # JSON list: the float tensor each chain's convs read
    RAW_OFFSET = "edgefold.raw_offset"  # JSON list: the constant added to the raw tensor (INT8 builds: -128)
    HELPER_NODES = "edgefold.helper_nodes"  # JSON list: the output of each node edgefold added (border term...)
    FRONTEND = "edgefold.frontend"  # JSON: the front end a `frontend` run added
    INT8_STRATEGY = "edgefold.int8_strategy"
    FP16_OVERFLOW = "edgefold.fp16_overflow"  # JSON list: the output of each node kept float32 as it overflows fp16
    PREFIX = "edgefold."


# the engine sidecar's schema (NAME.json "sidecar_version"; absent = 1). 2: input_contract is always complete.
# The Python runtime and the C++ sample (jetson/cpp, kSidecarVersion) refuse a newer one with one line.
SIDECAR_VERSION = 2


def check_sidecar_version(sidecar: dict, path: str) -> None:
    version = int(sidecar.get("sidecar_version", 1))
    if version > SIDECAR_VERSION:
        raise UsageError(f"{path}: sidecar schema version {version} is newer than this edgefold reads "
                         f"({SIDECAR_VERSION}); upgrade edgefold to the version that built the engine")


class HasMetadata(Protocol):
    @property
    def metadata_props(self) -> Any: ...


def read_meta(model: HasMetadata) -> dict[str, str]:
    """Every ``edgefold.*`` metadata entry of a model."""
    return {p.key: p.value for p in model.metadata_props if p.key.startswith(Meta.PREFIX)}


def meta_json(model: HasMetadata, key: str, default: Any = None) -> Any:
    value = read_meta(model).get(key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise UsageError(f"model metadata '{key}' is not valid JSON; re-run edgefold on the original model") from None


def helper_outputs(model: HasMetadata) -> list[str]:
    """The nodes edgefold added to a folded model (input cast, re-centring, border term), by their first output
    tensor as the fold recorded them; precision passes keep them in float. Never guessed from node names."""
    return [str(n) for n in meta_json(model, Meta.HELPER_NODES, [])]


def write_meta(model: HasMetadata, values: dict[str, str]) -> None:
    """Set ``values`` (replacing entries of the same keys, keeping every other entry and its order)."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in kept + list(values.items()):
        model.metadata_props.add(key=key, value=value)


# ---- pixel formats -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PixelFormat:
    """A camera format: its raw buffer, and the map from that buffer to the model's channels.

    ``channels`` is what the camera buffer holds per pixel (1 or 3). ``order`` says how those relate to the
    model's channels: "gray" (one value replicated to every model channel), "rgb" (the model's own order), "bgr"
    (reversed), or "bayer" (a colour mosaic, ``mosaic`` naming the sensor pattern, demosaiced bilinearly). Pixel
    values are scaled from ``bits`` to the 8-bit range the model was trained on (Mono12: x * 255 / 4095).
    """

    name: str  # edgefold's short name (the --gray/--rgb/--bgr flags) or the GenICam name
    genicam: str  # the GenICam PFNC name cameras and SDKs (pylon, Spinnaker, Aravis) use
    channels: int
    order: str
    bits: int = 8
    aliases: tuple[str, ...] = field(default=())
    mosaic: str | None = None  # Bayer sensor pattern, top-left 2x2 block row by row: "RGGB", "BGGR", ...
    # YUV: 4:2:0 "NV12" (Y, then UV interleaved), "NV21" (VU), "I420" (Y, U, V planes); 4:2:2 "YUYV", "UYVY"
    chroma: str | None = None
    yuv: str = "bt601-limited"  # the YUV->RGB matrix (--yuv): bt601|bt709, limited|full range

    @property
    def max_value(self) -> float:
        return float(2 ** self.bits - 1)

    @property
    def dtype(self) -> str:
        """What the engine takes: the buffer's uint8, else float32 (TensorRT has no uint16 input; float16 holds
        integers exactly only up to 2048, so 12- and 16-bit values need float32)."""
        return "uint8" if self.bits <= 8 else "float32"

    @property
    def per_pixel(self) -> bool:
        """Whether each model pixel depends on the same camera pixel only (folded into the first conv); a mosaic
        or 4:2:0 YUV needs a front end (in the engine, before the folded model)."""
        return self.mosaic is None and self.chroma is None

    @property
    def fold_order(self) -> str:
        """The camera flag the model is folded for: gray for Mono, the format's own order for RGB8/BGR8, and RGB
        for the colour formats a front end converts (Bayer, YUV)."""
        if self.order == "gray":
            return "gray"
        return self.order if self.per_pixel else "rgb"

    @property
    def model_channels(self) -> int | None:
        return 3 if (self.mosaic or self.chroma) else None

    @property
    def packed(self) -> bool:
        """4:2:2 YUV: a pair of pixels in 4 bytes, the buffer H x 2W."""
        from edgefold.core.yuv import PACKED

        return self.chroma in PACKED

    def buffer_size(self, height: int, width: int) -> tuple[int, int]:
        """Rows x columns of the camera buffer for a height x width image: 3H/2 x W for 4:2:0, H x 2W for 4:2:2."""
        if self.chroma:
            return (height, 2 * width) if self.packed else (height * 3 // 2, width)
        return height, width

    def image_size(self, rows: int, cols: int) -> tuple[int, int]:
        """The image a rows x columns camera buffer holds (``buffer_size`` backwards)."""
        if self.chroma:
            return (rows, cols // 2) if self.packed else (rows * 2 // 3, cols)
        return rows, cols

    @property
    def scale(self) -> float:
        """Camera value -> the 8-bit value the model was trained on."""
        return 255.0 / self.max_value

    def to_model(self, model_channels: int) -> np.ndarray:
        """The (model_channels, channels) matrix from raw camera channels to the model's 8-bit channels."""
        if not self.per_pixel:
            raise UsageError(f"pixel format {self.genicam}: a model pixel depends on other buffer positions than its "
                             f"own, which no per-pixel map expresses (edgefold adds a front end)")
        if self.order == "gray":
            return np.full((model_channels, 1), self.scale)
        if model_channels != self.channels:
            raise UsageError(f"pixel format {self.genicam} gives {self.channels} channels, the model takes "
                             f"{model_channels}")
        eye = np.eye(self.channels) * self.scale
        return eye[::-1].copy() if self.order == "bgr" else eye

    def reference(self, raw: np.ndarray, model_channels: int) -> np.ndarray:
        """What the original model sees before its normalisation, in float: (channels, H, W) raw -> (C, H, W).
        For a mosaic: OpenCV's bilinear demosaic (core/bayer.py) without its rounding to uint8."""
        if self.mosaic:
            from edgefold.core.bayer import demosaic

            return demosaic(np.asarray(raw, np.float64)[0], self.mosaic) * self.scale
        if self.chroma:
            from edgefold.core.yuv import to_rgb

            return to_rgb(np.asarray(raw, np.float64)[0], self.chroma, self.yuv)
        return np.einsum("cj,jhw->chw", self.to_model(model_channels), np.asarray(raw, np.float64))

    def frame_from_image(self, image: np.ndarray) -> np.ndarray:
        """An H x W (gray or mosaic) or H x W x 3 array as stored in a file, as a (channels, H, W) raw frame."""
        arr = np.asarray(image, np.float64)
        if self.channels == 1:
            return arr[None] if arr.ndim == 2 else arr[..., :1].transpose(2, 0, 1)
        frame = np.moveaxis(arr[..., :3], 2, 0)
        return frame[::-1].copy() if self.order == "bgr" else frame


PIXEL_FORMATS: tuple[PixelFormat, ...] = (
    PixelFormat("gray", "Mono8", 1, "gray"),
    PixelFormat("rgb", "RGB8", 3, "rgb", aliases=("RGB8Packed",)),
    PixelFormat("bgr", "BGR8", 3, "bgr", aliases=("BGR8Packed",)),
    PixelFormat("Mono10", "Mono10", 1, "gray", bits=10),
    PixelFormat("Mono12", "Mono12", 1, "gray", bits=12),
    PixelFormat("Mono16", "Mono16", 1, "gray", bits=16),
    PixelFormat("BayerRG8", "BayerRG8", 1, "bayer", mosaic="RGGB"),
    PixelFormat("BayerBG8", "BayerBG8", 1, "bayer", mosaic="BGGR"),
    PixelFormat("BayerGR8", "BayerGR8", 1, "bayer", mosaic="GRBG"),
    PixelFormat("BayerGB8", "BayerGB8", 1, "bayer", mosaic="GBRG"),
    PixelFormat("NV12", "NV12", 1, "yuv", chroma="NV12", aliases=("YUV420SP_NV12",)),
    PixelFormat("NV21", "NV21", 1, "yuv", chroma="NV21", aliases=("YUV420SP_NV21",)),
    PixelFormat("I420", "I420", 1, "yuv", chroma="I420", aliases=("YUV420_8", "IYUV")),
    PixelFormat("YUYV", "YUV422_8", 1, "yuv", chroma="YUYV", aliases=("YUY2", "YUV422_8_YUYV")),
    PixelFormat("UYVY", "YUV422_8_UYVY", 1, "yuv", chroma="UYVY", aliases=("UYVY422",)),
) + tuple(PixelFormat(f"Bayer{p}{bits}", f"Bayer{p}{bits}", 1, "bayer", bits=bits, mosaic=mosaic)
          for bits in (10, 12, 16) for p, mosaic in (("RG", "RGGB"), ("BG", "BGGR"), ("GR", "GRBG"), ("GB", "GBRG")))
def pixel_format(name: str) -> PixelFormat:
    """A format by edgefold's short name or its GenICam name (case-insensitive), or a one-line usage error."""
    key = name.lower()
    for fmt in PIXEL_FORMATS:
        if key in (fmt.name.lower(), fmt.genicam.lower(), *(a.lower() for a in fmt.aliases)):
            return fmt
    for suffix in ("_ea", "_vng", "ea", "vng"):
        if key.endswith(suffix) and key.startswith("bayer"):
            raise UsageError(f"pixel format '{name}': {'OpenCV edge-aware (EA)' if 'ea' in suffix else 'VNG'} "
                             f"demosaicing is not linear, so no fold equals it; use bilinear demosaicing "
                             f"(BayerRG8 ...)")
    known = ", ".join(f.genicam for f in PIXEL_FORMATS)
    raise UsageError(f"unknown pixel format '{name}'; edgefold folds {known}")


# ---- the contract ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputContract:
    """What the folded model's input expects; compare, build, the runtime and the C++ app read it."""

    name: str
    dtype: str  # "uint8" | "float32" | ...
    layout: str  # "NCHW" | "NHWC" | "NHW" | ...
    channels: int
    channel_order: str  # "gray" | "rgb" | "bgr" | "as-original"
    shape: tuple
    channel_axis: int
    pixel_range: tuple[float, float]

    @property
    def pixel_format(self) -> PixelFormat | None:
        """The camera format, when the contract names one (a bare "as-original" input has none)."""
        try:
            return pixel_format(self.channel_order)
        except UsageError:
            return None

    def static_size(self) -> tuple[int, int] | None:
        """(H, W) when both are fixed."""
        spatial = [d for i, d in enumerate(self.shape) if i not in (0, self.channel_axis)]
        if len(spatial) == 2 and all(isinstance(d, int) for d in spatial):
            return int(spatial[0]), int(spatial[1])
        return None

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "layout": self.layout, "channels": self.channels,
                "channel_order": self.channel_order, "shape": list(self.shape),
                "channel_axis": self.channel_axis, "pixel_range": list(self.pixel_range)}

    @classmethod
    def from_json(cls, d: dict) -> InputContract:
        """From a model's metadata or a sidecar; a missing key is a one-line error naming it."""
        try:
            channels = int(d["channels"])
            axis = int(d.get("channel_axis", 1))
            layout = d.get("layout") or {1: "NCHW", 3: "NHWC", -1: "NHW"}.get(axis, f"channels-axis-{axis}")
            return cls(name=str(d["name"]), dtype=str(d["dtype"]), layout=layout, channels=channels,
                       channel_order=str(d.get("channel_order") or ("gray" if channels == 1 else "as-original")),
                       shape=tuple(d["shape"]), channel_axis=axis,
                       pixel_range=tuple(float(v) for v in d.get("pixel_range", (0.0, 255.0))))  # type: ignore[arg-type]
        except KeyError as err:
            raise UsageError(f"input contract without '{err.args[0]}'; rebuild with this edgefold") from None

    def arrange(self, frame: np.ndarray) -> np.ndarray:
        """A raw frame - H x W or N x H x W for gray, H x W x C or N x H x W x C for colour - as this input's
        tensor (layout, dtype, batch), checked against the contract."""
        x = np.asarray(frame)
        dtype = np.dtype(self.dtype)
        if self.channels == 1:
            if x.ndim == 3 and x.shape[-1] in (3, 4):
                raise UsageError(f"frame of shape {tuple(frame.shape)} looks like colour (H x W x {x.shape[-1]}); "
                                 f"the model takes gray frames H x W or N x H x W: convert it first")
            if x.ndim == 2:
                x = x[None]
            if x.ndim == 4 and x.shape[-1] == 1:
                x = x[..., 0]
            if x.ndim != 3:
                raise UsageError(f"a gray frame is H x W or N x H x W, got shape {tuple(frame.shape)}")
            if self.layout != "NHW":  # NHW: the model inserts the channel axis itself
                x = x[:, None] if self.layout == "NCHW" else x[..., None]
        else:
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[-1] != self.channels:
                raise UsageError(f"a {self.channels}-channel frame is H x W x {self.channels} or N x H x W x "
                                 f"{self.channels}, got shape {tuple(frame.shape)}")
            if self.layout == "NCHW":
                x = np.transpose(x, (0, 3, 1, 2))
        if x.dtype != dtype:
            if dtype == np.uint8:
                raise UsageError(f"the model takes raw uint8 pixels, got {x.dtype} (convert with "
                                 f".astype(np.uint8) if the values are 0..255)")
            x = x.astype(dtype)
        for axis, (want, got) in enumerate(zip(self.shape, x.shape)):
            if isinstance(want, int) and want != got and axis != 0:
                raise UsageError(f"frame gives {tuple(x.shape)} for input '{self.name}', the model takes "
                                 f"{tuple(self.shape)}; resize frames to the engine's size or rebuild it")
        return np.ascontiguousarray(x)


def camera_front_end(meta: dict[str, str]) -> tuple[PixelFormat, int, list] | None:
    """(pixel format, the folded model's channel count, how the original receives the converted frame) of a
    model with a camera-format front end (``fold --pixel-format``), from its metadata (or a sidecar's)."""
    import dataclasses

    raw = meta.get(Meta.FRONTEND)
    front = json.loads(raw) if raw else None
    if not front or front.get("kind") != "pixel-format":
        return None
    fmt = pixel_format(front["format"])
    if front.get("yuv"):
        fmt = dataclasses.replace(fmt, yuv=front["yuv"])
    return fmt, int(front["folded_contract"]["channels"]), list(front.get("source_inputs", []))


@dataclass(frozen=True)
class Sidecar:
    """``NAME.json`` beside an engine, as every reader takes it: the Python runtime, compare, the DeepStream and
    Triton writers, serve-check (and, field for field, the C++ sample). ``data`` is the whole document: the
    build also records sources, calibration, accuracy and the build plan there."""

    contract: InputContract
    outputs: tuple[dict, ...]
    precision: str
    profiles: tuple[dict, ...]  # build_plan.profiles: {"name", "min", "opt", "max"}
    engine: dict  # {"built", "tensorrt", "compute_capability", "gpu", ...}
    source_inputs: tuple[dict, ...]
    frontend: dict | None
    version: int
    data: dict

    @classmethod
    def from_json(cls, d: dict, path: str = "sidecar") -> Sidecar:
        check_sidecar_version(d, path)
        if not d.get("input_contract"):
            raise UsageError(f"{path}: no input_contract; rebuild the engine with `edgefold build`")
        return cls(contract=InputContract.from_json(d["input_contract"]),
                   outputs=tuple(d.get("outputs") or ()), precision=str(d.get("precision") or "fp16"),
                   profiles=tuple((d.get("build_plan") or {}).get("profiles") or ()),
                   engine=dict(d.get("engine") or {}), source_inputs=tuple(d.get("source_inputs") or ()),
                   frontend=d.get("frontend"), version=int(d.get("sidecar_version", 1)), data=d)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Sidecar:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{p}: sidecar missing; copy NAME.json with NAME.engine (edgefold build writes both)")
        try:
            return cls.from_json(json.loads(p.read_text()), str(p))
        except json.JSONDecodeError as err:
            raise UsageError(f"{p}: not valid JSON ({err}); copy the sidecar that was built with the engine") from None

    def profile(self, name: str) -> dict | None:
        return next((p for p in self.profiles if p.get("name") == name), None)

    @property
    def max_batch(self) -> int | None:
        """The contract's fixed batch, else the profile's largest, else None (unknown)."""
        batch = self.contract.shape[0]
        if isinstance(batch, int):
            return batch
        p = self.profile(self.contract.name)
        return int(p["max"][0]) if p else None

    def to_json(self) -> dict:
        return {**self.data, "sidecar_version": self.version, "input_contract": self.contract.to_json()}


def contracts_of(model: HasMetadata) -> list[InputContract]:
    """The contracts a folded model records (empty for a model edgefold did not fold)."""
    return [InputContract.from_json(c) for c in meta_json(model, Meta.INPUT_CONTRACTS, [])]
