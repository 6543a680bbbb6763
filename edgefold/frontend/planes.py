"""Front ends before an unchanged (folded) stem: a camera buffer converted to the frame the stem reads.

Mono10/12/16: x * 255 / (2^bits - 1), one Mul. A Bayer mosaic: a bilinear demosaic as OpenCV's
``cvtColor(COLOR_Bayer..2RGB)`` computes it but without its rounding - SpaceToDepth(2), one 3x3 conv (4 -> 12
channels) at half resolution, DepthToSpace(2), then the outermost rows and columns copied from their neighbours
(two Gathers). YUV: the Y plane and the chroma planes upsampled (nearest, as OpenCV shares one U, V over a block),
then the matrix as a 1x1 conv. ``frontend.stems`` composes the conversion into the stem instead where it can;
these serve the other stems, and the demosaic also the edge strips of a composed Bayer stem.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.core.bayer import phase_conv_weights
from edgefold.core.contract import PixelFormat
from edgefold.errors import UsageError

DEMOSAIC_MACS_PER_PIXEL = 12 * 4 * 9 // 4  # the 4->12 3x3 conv at a quarter of the pixels
YUV_MACS_PER_PIXEL = 9  # the 3x3 matrix as a 1x1 conv


def macs_per_pixel(fmt: PixelFormat) -> int:
    return DEMOSAIC_MACS_PER_PIXEL if fmt.mosaic else (YUV_MACS_PER_PIXEL if fmt.chroma else 0)




class Graph:
    """The nodes and constants of one front end, every name under ``edgefold/FORMAT/``; a constant asked for twice
    under one name is made once."""

    def __init__(self, fmt: PixelFormat, prefix: str | None = None) -> None:
        self.prefix = prefix or f"edgefold/{fmt.genicam}"  # a fresh one (graph.names.FreshNames.prefix) in a model
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}/{name}"
        self.inits.setdefault(full, numpy_helper.from_array(np.asarray(value), full))
        return full

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        """A node with one output, named as the node."""
        return self.output(op, inputs, f"{self.prefix}/{name}", name, **attrs)

    def output(self, op: str, inputs: list[str], out: str, name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{self.prefix}/{name}", **attrs))
        return out

    def result(self) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
        return self.nodes, list(self.inits.values())


def rescale(src: str, dst: str, fmt: PixelFormat, prefix: str | None = None) -> tuple[list, list]:
    g = Graph(fmt, prefix)
    g.output("Mul", [src, g.const("scale", np.array(fmt.scale, np.float32))], dst, "to_8bit")
    return g.result()


def demosaic(src: str, dst: str, fmt: PixelFormat, shape: list, prefix: str | None = None) -> tuple[list, list]:
    assert fmt.mosaic is not None
    g = Graph(fmt, prefix)
    c, node = g.const, g.node
    # 10-16-bit mosaics: the scale to the 8-bit range rides on the demosaic weights
    weight = c("W", (phase_conv_weights(fmt.mosaic) * fmt.scale).astype(np.float32))
    x = node("Cast", [src], "f32", to=onnx.TensorProto.FLOAT)
    h, w = shape[2], shape[3]
    static = isinstance(h, int) and isinstance(w, int)
    if static and (h < 3 or w < 3):
        raise UsageError(f"a Bayer frame needs at least 3x3 pixels, the model takes {h}x{w}")
    size = None if static else node("Slice", [node("Shape", [x], "shape"), c("s2", np.array([2])),
                                              c("s4", np.array([4])), c("s0", np.array([0]))], "hw")
    if not static or h % 2 or w % 2:  # SpaceToDepth needs even sizes: one zero row/column, cropped again below
        if static:
            pads = c("pads", np.array([0, 0, 0, 0, 0, 0, h % 2, w % 2], np.int64))
        else:
            assert size is not None
            odd = node("Mod", [size, c("two", np.array([2, 2], np.int64))], "odd")
            pads = node("Concat", [c("zeros6", np.zeros(6, np.int64)), odd], "pads", axis=0)
        x = node("Pad", [x, pads], "even")
    x = node("SpaceToDepth", [x], "phases", blocksize=2)
    x = node("Conv", [x, weight], "demosaic", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = node("DepthToSpace", [x], "rgb_even", blocksize=2, mode="DCR")
    if static:
        if h % 2 or w % 2:
            x = node("Slice", [x, c("crop_starts", np.array([0, 0])), c("crop_ends", np.array([h, w])),
                               c("crop_axes", np.array([2, 3]))], "rgb")
        rows = c("rows", np.clip(np.arange(h), 1, h - 2).astype(np.int64))
        cols = c("cols", np.clip(np.arange(w), 1, w - 2).astype(np.int64))
    else:
        assert size is not None
        x = node("Slice", [x, c("crop_starts", np.array([0, 0])), size, c("crop_axes", np.array([2, 3]))], "rgb")
        idx = []
        for axis, name in ((0, "rows"), (1, "cols")):
            length = node("Gather", [size, c(f"axis{axis}", np.array(axis, np.int64))], f"{name}_n")
            last = node("Sub", [length, c("two_s", np.array(2, np.int64))], f"{name}_last")
            r = node("Range", [c("zero", np.array(0, np.int64)), length, c("one", np.array(1, np.int64))],
                     f"{name}_all")
            idx.append(node("Min", [node("Max", [r, c("one", np.array(1, np.int64))], f"{name}_lo"), last], name))
        rows, cols = idx
    # OpenCV's border: the outermost rows and columns are copies of their neighbours
    x = node("Gather", [x, rows], "rows_filled", axis=2)
    g.output("Gather", [x, cols], dst, "cols_filled", axis=3)
    return g.result()


def _yuv_to_rgb(g: Graph, y: str, uv_half: str, scales: list[float], fmt: PixelFormat, dst: str,
                v_first: bool = False) -> None:
    """Y (N, 1, H, W) and U, V at reduced resolution (N, 2, ., .): chroma upsampled by ``scales`` (nearest, as
    OpenCV shares one U, V over the pixels of a block), then the ``--yuv`` matrix as a 1x1 conv."""
    from edgefold.core.yuv import affine

    # Resize's roi input is required before opset 13: an empty one
    up = g.node("Resize", [uv_half, g.const("roi", np.zeros(0, np.float32)),
                           g.const("scales", np.array(scales, np.float32))], "uv_full", mode="nearest",
                coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    yuv = g.node("Concat", [y, up], "yuv", axis=1)
    m, b = affine(fmt.yuv)
    if v_first:  # the chroma channels come as V, U
        m = m[:, [0, 2, 1]]
    g.output("Conv", [yuv, g.const("W", m.reshape(3, 3, 1, 1).astype(np.float32)), g.const("B", b.astype(np.float32))],
             dst, "to_rgb", kernel_shape=[1, 1])


def yuv_planes(g: Graph, src: str, fmt: PixelFormat, shape: list) -> tuple[str, str]:
    """The camera's YUV buffer as float planes: Y (N, 1, H, W) and the chroma (N, 2, ., .) in the buffer's order
    (U, V; V, U for NV21) at its own resolution: H/2 x W/2 for 4:2:0 ((N, 1, 3H/2, W): NV12/NV21 pairs
    interleaved along the row, I420 a U plane then a V plane), H x W/2 for packed 4:2:2 ((N, 1, H, 2W))."""
    c, node = g.const, g.node
    batch = shape[0] if isinstance(shape[0], int) else -1
    x = node("Cast", [src], "f32", to=onnx.TensorProto.FLOAT)
    h, w = fmt.image_size(shape[2], shape[3])
    if fmt.packed:  # Y at every other byte, U and V at every fourth
        y_at, c_at = (0, 1) if fmt.chroma == "YUYV" else (1, 0)
        axis3, end = c("axis3", np.array([3])), c("end", np.array([2 * w]))
        luma = node("Slice", [x, c("y_s", np.array([y_at])), end, axis3, c("step2", np.array([2]))], "y")
        u = node("Slice", [x, c("u_s", np.array([c_at])), end, axis3, c("step4", np.array([4]))], "u")
        v = node("Slice", [x, c("v_s", np.array([c_at + 2])), end, axis3, c("step4", np.array([4]))], "v")
        return luma, node("Concat", [u, v], "uv", axis=1)
    axis2 = c("axis2", np.array([2]))
    luma = node("Slice", [x, c("y_start", np.array([0])), c("y_end", np.array([h])), axis2], "y")
    ch = node("Slice", [x, c("c_start", np.array([h])), c("c_end", np.array([h * 3 // 2])), axis2], "chroma")
    if fmt.chroma == "I420":
        return luma, node("Reshape", [ch, c("planar_shape", np.array([batch, 2, h // 2, w // 2], np.int64))], "uv")
    pairs = node("Reshape", [ch, c("pairs_shape", np.array([batch, h // 2, w // 2, 2], np.int64))], "pairs")
    return luma, node("Transpose", [pairs], "uv", perm=[0, 3, 1, 2])


def yuv(src: str, dst: str, fmt: PixelFormat, shape: list, prefix: str | None = None) -> tuple[list, list]:
    """A YUV buffer -> its planes -> chroma upsampled to full resolution -> RGB."""
    g = Graph(fmt, prefix)
    luma, chroma = yuv_planes(g, src, fmt, shape)
    scales = [1.0, 1.0, 1.0, 2.0] if fmt.packed else [1.0, 1.0, 2.0, 2.0]
    _yuv_to_rgb(g, luma, chroma, scales, fmt, dst, v_first=fmt.chroma == "NV21")
    return g.result()
