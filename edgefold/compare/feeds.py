"""Which feed each model gets from a raw frame: the folded model's contract, the original's recorded or
declared input map, the frames themselves, and inputs that are not frames."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx

from edgefold.core.affine import ChannelAffine, declared
from edgefold.core.contract import InputContract, Meta, PixelFormat, contracts_of, meta_json, read_meta
from edgefold.core.frames import InputFeed, load_images, synthetic_frames
from edgefold.errors import UsageError
from edgefold.graph.shapes import spatial_axes

if TYPE_CHECKING:
    from edgefold.compare.comparison import CompareOptions


def edgefold_meta(model: onnx.ModelProto) -> dict:
    return read_meta(model)


def _dtype(elem: int) -> str:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name


def _image_input(model: onnx.ModelProto, what: str) -> onnx.ValueInfoProto:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits and len(i.type.tensor_type.shape.dim) in (3, 4)]
    contracts = contracts_of(model)
    sources = meta_json(model, Meta.SOURCE_INPUTS, [])
    if len(inputs) > 1 and (contracts or sources):  # a folded multi-camera model: the first folded input leads
        first = {c.name for c in contracts[:1]} | {src["name"] for src in sources[:1]}
        inputs = [i for i in inputs if i.name in first] or inputs
    if len(inputs) != 1:
        raise UsageError(f"{what}: expected one image input (N x C x H x W, N x H x W x C or N x H x W), found "
                         f"{len(inputs)}")
    return inputs[0]


def _dims(vi: onnx.ValueInfoProto) -> tuple:
    """Declared dims: an int, a symbolic name, or None (unnamed, or paddle2onnx's dim_value -1: dynamic too)."""
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                 for d in vi.type.tensor_type.shape.dim)


def candidate_feed(model: onnx.ModelProto, what: str) -> tuple[InputFeed, str, float]:
    """(feed, channel order, pixel max) of a candidate ONNX: its edgefold contract, else its own input."""
    contracts = contracts_of(model)
    if contracts:
        c = contracts[0]
        return InputFeed.from_contract(c), c.channel_order, float(c.pixel_range[1])
    vi = _image_input(model, what)
    return _plain_feed(vi)


def candidate_contract(model: onnx.ModelProto, what: str) -> InputContract:
    """The input contract of a candidate: the one the fold recorded, else the model's own image input fed as
    it is (a model built with --no-fold, or one edgefold never saw)."""
    contracts = contracts_of(model)
    if contracts:
        return contracts[0]
    return plain_contract(_image_input(model, what))


def plain_contract(vi: onnx.ValueInfoProto) -> InputContract:
    """An image input fed as it is (no edgefold contract)."""
    feed, order, pixel_max = _plain_feed(vi)
    layout = {3: "NHWC", -1: "NHW"}.get(feed.channel_axis, "NCHW")
    return InputContract(name=feed.name, dtype=feed.dtype, layout=layout, channels=feed.affine.in_channels,
                         channel_order=order, shape=tuple(feed.shape), channel_axis=feed.channel_axis,
                         pixel_range=(0.0, pixel_max))


def _plain_feed(vi: onnx.ValueInfoProto) -> tuple[InputFeed, str, float]:
    dims = _dims(vi)
    if len(dims) == 3:  # N x H x W gray
        return (InputFeed(vi.name, _dtype(vi.type.tensor_type.elem_type), dims, -1, ChannelAffine.identity(1)),
                "gray", 255.0)
    axis = 3 if spatial_axes(list(vi.type.tensor_type.shape.dim)) == (1, 2) else 1
    channels = dims[axis]
    if not isinstance(channels, int):
        raise UsageError(f"input '{vi.name}': unknown channel count; export it with a fixed channel dimension")
    dtype = _dtype(vi.type.tensor_type.elem_type)
    return (InputFeed(vi.name, dtype, dims, axis, ChannelAffine.identity(channels)),
            "gray" if channels == 1 else "as-original", 255.0)


def declared_feed(feed: InputFeed, raw_channels: int, options: CompareOptions) -> InputFeed:
    """``feed`` receiving a raw frame through the declared replication/order and normalisation."""
    channels = feed.affine.out_channels
    order = options.channels or ("gray" if raw_channels == 1 and channels != 1 else "as-original")
    try:
        aff = declared(channels, raw_channels, order, options.mean or (0.0,), options.std or (1.0,),
                       options.scale or 1.0)
    except ValueError:
        fits = "--gray" if raw_channels == 1 else "--rgb or --bgr"
        raise UsageError(f"--{order} does not fit the candidate, which takes {raw_channels}-channel frames (reference "
                         f"input '{feed.name}' has {channels}); declare the candidate's camera with {fits}") from None
    return InputFeed(feed.name, feed.dtype, feed.shape, feed.channel_axis, aff)


def reference_feed(reference: onnx.ModelProto, candidate_meta: dict, raw_channels: int,
                   options: CompareOptions) -> InputFeed:
    """How the original receives a raw frame: as declared, as the fold recorded it, or replicated."""
    sources = json.loads(candidate_meta.get(Meta.SOURCE_INPUTS, "[]"))
    if sources and not options.declares:
        return InputFeed.from_json(sources[0])
    vi = _image_input(reference, "reference")
    feed, _, _ = _plain_feed(vi)
    channels = feed.affine.out_channels
    if options.declares:
        return declared_feed(feed, raw_channels, options)
    if channels == raw_channels:
        return feed
    if raw_channels == 1:
        return InputFeed(feed.name, feed.dtype, feed.shape, feed.channel_axis,
                         ChannelAffine(np.ones((channels, 1)), np.zeros(channels)))
    raise UsageError(f"reference input '{vi.name}' has {channels} channels, the candidate {raw_channels}; "
                     f"declare the mapping with --gray/--rgb/--bgr and --mean/--std/--scale")


def read_as_float(model: onnx.ModelProto, name: str) -> bool:
    """Retype integer input ``name`` of ``model`` (compare's own copy of the original) to float32 when every
    node that reads it casts it to float32: the model then computes the same on integral pixels and sees the
    exact value of a camera conversion (12-bit scaled to 8, demosaiced, YUV) instead of its rounding to uint8,
    which is what the folded model computes with. Returns whether it did."""
    readers = [n for n in model.graph.node if name in n.input]
    to_float = [n for n in readers if n.op_type == "Cast" and
                any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    vi = next((i for i in model.graph.input if i.name == name), None)
    if vi is None or not readers or len(to_float) != len(readers) or any(o.name == name for o in model.graph.output):
        return False
    vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return True


def comparison_frames(options: CompareOptions, feed: InputFeed, order: str, pixel_max: float,
                      camera: PixelFormat | None = None) -> list[tuple[str, np.ndarray]]:
    """Named raw frames for both models: the images given, random frames (4 without images), and black, white,
    edges and a page. A YUV camera's synthetic frames
    are synthetic RGB frames encoded as the camera would (random bytes would be mostly out of gamut, which no
    camera sends)."""
    out: list[tuple[str, np.ndarray]] = []
    if options.images:
        out += load_images(options.images, feed.affine.in_channels, feed.static_size(),
                           "bgr" if order == "bgr" else "rgb")
    # black, white, edges and a page always: flat frames are where a network's own float32 noise is largest
    n = options.random if options.random is not None else (0 if options.images else 4)
    size = feed.static_size() or options.size
    if camera is not None and camera.chroma:
        from edgefold.core.yuv import from_rgb

        h, w = camera.image_size(*size) if size else (160, 224)
        out += [(name, from_rgb(f, camera.chroma, camera.yuv)[None].astype(np.float64))
                for name, f in _synthetic(h, w, 3, 255.0, n)]
    else:
        out += _synthetic(*(size or (160, 224)), feed.affine.in_channels, pixel_max, n)
    return out


def _synthetic(h: int, w: int, channels: int, pixel_max: float, n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` random frames, then black, white, edges and a page."""
    randoms = [(f"random-{i}", synthetic_frames(h, w, channels, pixel_max, seed=100 + i)[0]) for i in range(n)]
    return randoms + list(zip(("black", "white", "edges", "page"), synthetic_frames(h, w, channels, pixel_max)[1:]))


def detect_precision(model: onnx.ModelProto) -> str:
    ops = {n.op_type for n in model.graph.node}
    if {"QuantizeLinear", "DequantizeLinear"} & ops:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def more_chains(meta: dict) -> list[tuple[InputFeed, InputFeed]]:
    """(original, folded) feeds of every folded input after the first, from the fold's metadata."""
    contracts = [InputContract.from_json(c) for c in json.loads(meta.get(Meta.INPUT_CONTRACTS, "[]"))]
    sources = json.loads(meta.get(Meta.SOURCE_INPUTS, "[]"))
    pairs = []
    for c, src in zip(contracts[1:], sources[1:]):
        pairs.append((InputFeed.from_json(src), InputFeed.from_contract(c)))
    return pairs


def side_inputs(model: onnx.ModelProto, covered: set[str]) -> dict[str, np.ndarray]:
    """Deterministic values for inputs that are not camera frames (a gain, a mask), fed to both models."""
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(7)
    out = {}
    for vi in model.graph.input:
        if vi.name in covered or vi.name in inits:
            continue
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        out[vi.name] = (rng.random(shape) + 0.5).astype(dtype) if dtype.kind == "f" else \
            rng.integers(0, 2, shape).astype(dtype)
    return out


