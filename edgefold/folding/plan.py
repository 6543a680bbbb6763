"""Plan data: what matching found, produced without touching the graph; ``apply`` writes it."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from edgefold.core.affine import ChannelAffine
from edgefold.core.contract import InputContract


@dataclass(frozen=True)
class Lin:
    """A tensor known to be ``affine`` of a raw-domain tensor, per pixel, along channel ``axis``.

    ``raw`` names the raw-domain tensor: ``RAW_INPUT`` (the new graph input as float) or the name of an
    original tensor whose raw twin a cloned node produces. The raw twin has this tensor's shape except
    that its channel count is ``affine.in_channels``.
    """

    raw: str
    affine: ChannelAffine
    axis: int
    rank: int
    is_float: bool
    via: tuple[int, ...] = ()  # 1x1 convs treated as affine on the way, for backtracking
    int_range: tuple[int, int] | None = None  # value range of an integer tensor (the input's dtype range)
    # zero padding of the normalised tensor by a Pad node (top, left, bottom, right), merged into the conv
    # that reads it: the conv's own padding is the same thing, so the border term covers both
    zero_pads: tuple[int, int, int, int] | None = None
    # zero padding whose amounts are computed from the input's size (TF-style "same" padding exported with
    # dynamic H/W): (H, W, top, left, bottom, right) of the unpadded tensor at each probe input size. The conv
    # that reads it takes it as auto_pad SAME when that is the same padding at every size
    size_pads: tuple[tuple[int, int, int, int, int, int], ...] | None = None
    # a channel lane: one channel selected with a scalar index (``x[:, c]``), so the tensor has no channel
    # axis; ``axis`` is where it was and ``affine`` has one row. Only per-pixel arithmetic and the ops that
    # put the lane back into a channel (Unsqueeze, Reshape, Concat, Scatter, Where) may read it.
    lane: bool = False
    # for each axis, the input axis whose size it has (the channel axis: -1, its size is the channel count);
    # None once a spatial op changed the shape. Shape-only tensors (scatter indices, Expand targets) are
    # evaluated from it at trial input sizes.
    frame: tuple[int, ...] | None = None

    @property
    def padded(self) -> bool:
        return self.zero_pads is not None or self.size_pads is not None


RAW_INPUT = "<raw input>"


class BorderScheme(str, Enum):
    """How a folded conv stays exact where its zero padding meets the image border: the original pads the
    normalised image with 0, the folded conv the raw one, and ``conv(A x + b, W) = conv(x, W A) + conv(1_valid, K)``
    with ``K[o] = sum_c W[o, c] b[c]`` - the last term, constant inside, differs on a ring at the border."""

    NONE_NEEDED = "none-needed"  # no offset in the map, no padding, or every tap inside at this size
    STATIC_TINYCONV = "static-tinyconv"  # a small conv over ones at output resolution (static size)
    # the conv on the interior (no padded tap: the bias holds the whole border term there) and exact strips along
    # the edges, joined by two Concats after the pool or conv that follows (static size)
    STATIC_STRIPS = "static-strips"
    STATIC_SEPARABLE = "static-separable"  # two MatMuls with constant validity matrices (static size)
    DYNAMIC_SEPARABLE = "dynamic-separable"  # validity matrices computed from the input shape at run time
    ADAPTER_EXACT = "adapter-exact"  # a composed adapter conv whose backbone conv has no padding
    APPROX = "approx"  # --border approx: the border ring is left uncorrected, and reported

    @property
    def exact(self) -> bool:
        return self is not BorderScheme.APPROX

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RawOp:
    """An original node re-applied to raw-domain tensors (it commutes with the affine map)."""

    node_id: int
    raw_inputs: tuple[tuple[int, str], ...]  # (input position, raw key)
    outputs: tuple[str, ...]  # original output names: each becomes the key of its raw twin
    patched_inputs: tuple[tuple[int, np.ndarray], ...] = ()  # e.g. Resize sizes with the raw channel count
    keep_outputs: bool = False  # the outputs are not image data (a Shape): they keep their names and readers
    # operands computed from the input's shape (Resize sizes/scales) whose channel entry is overwritten for the
    # raw tensor: (input position, mask, value) becomes ``Where(mask, value, operand)``
    masked_inputs: tuple[tuple[int, np.ndarray, np.ndarray], ...] = ()


@dataclass(frozen=True)
class Correction:
    """``conv(1_valid, kernel)``: the border term of an exact fold under zero padding (the map ``n = A x + b``
    folded into a conv leaves ``conv(1_valid, K)``, ``K[o] = sum_c W[o, c] b[c]``, to add).

    Separable: tap (a, b) at output (i, j) is valid iff row tap a and column tap b are, so the map is
    ``M[o, i, j] = sum_ab K[o, a, b] R[a, i] C[b, j]`` - two MatMuls. ``rows``/``cols`` are the 0/1
    validity matrices when the input size is static; otherwise the graph computes them from its shape.
    """

    kernel: np.ndarray  # (O, kh, kw)
    scheme: BorderScheme  # STATIC_TINYCONV | STATIC_STRIPS | STATIC_SEPARABLE | DYNAMIC_SEPARABLE
    rows: np.ndarray | None = None  # (kh, H_out)
    cols: np.ndarray | None = None  # (kw, W_out)
    conv_attrs: dict = field(default_factory=dict)  # strides, pads, dilations, auto_pad of the conv
    tiny: TinyConv | None = None
    size: tuple[int, int] | None = None  # the conv's input (H, W) when static
    strips: Strips | None = None


@dataclass(frozen=True)
class TinyConv:
    """The border term as a small conv over a ones image at output resolution (static shapes).

    The term depends on an output pixel only through its row class (which top/bottom band row, or the
    interior) and its column class, and so does a conv of zero-padded ones with a kernel of
    (bands + 1) rows and columns; ``kernel`` solves the two for equality. The ones image is made at run
    time from the input (``x * 0 + 1`` on a strided slice) so onnxruntime does not constant-fold it and
    can fuse the Add into the main conv as its sum input.
    """

    kernel: np.ndarray  # (O, 1, Lr, Lc)
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    slice_ends: tuple[int, int]
    slice_steps: tuple[int, int]
    fill: tuple[int, int]  # rows, columns of ones to pad at the bottom/right of the slice


@dataclass(frozen=True)
class StripPiece:
    """One piece of a stem conv cut for ``BorderScheme.STATIC_STRIPS``: the conv on input pixels
    ``[starts, ends)`` (rows, columns) with the conv's pads on the frame's edges only (``pads``: top, left, bottom,
    right), plus ``tiny`` (this piece's own border term, None for the interior), then the pointwise ops and the
    tail with ``tail_pads``. The top and bottom strips span the width; the left and right ones the interior's
    rows."""

    label: str  # top | left | interior | right | bottom
    starts: tuple[int, int]
    ends: tuple[int, int]
    pads: tuple[int, int, int, int]
    tail_pads: tuple[int, int, int, int]
    tiny: TinyConv | None
    outputs: int = 0  # conv output pixels (rows x columns) this piece computes

    @property
    def band(self) -> str:
        """Which Concat joins it: the middle band's columns, or the bands."""
        return "middle" if self.label in ("left", "interior", "right") else "bands"


@dataclass(frozen=True)
class Strips:
    """The pieces of a ``STATIC_STRIPS`` fold, in output order, and the nodes after the conv they each run: the
    pointwise ``chain`` and the ``tail`` (a pool or conv) whose output the two Concats give."""

    pieces: tuple[StripPiece, ...]
    chain: tuple[int, ...]  # node ids
    tail: int  # node id
    extra_outputs: int  # stem outputs computed beyond the frame's (the pieces overlap by the tail's window)


@dataclass(frozen=True)
class ConvFold:
    node_id: int
    node_name: str
    raw: str
    affine: ChannelAffine
    weight: np.ndarray  # new (O, J/g', kh, kw)
    bias: np.ndarray | None
    group: int
    old_weight_shape: tuple[int, ...]
    correction: Correction | None
    border: BorderScheme
    border_note: str
    attrs_override: dict | None = None  # new conv attributes (a composed adapter changes kernel and pads)


@dataclass(frozen=True)
class ChainPlan:
    input_name: str
    original_dtype: str
    original_shape: tuple
    input_affine: ChannelAffine  # raw frame -> what the original input receives (declared transform)
    contract: InputContract
    removed: tuple[int, ...]  # node ids of the preprocessing chain
    raw_ops: tuple[RawOp, ...]
    convs: tuple[ConvFold, ...]
    arithmetic_in_graph: bool
    raw_offset: float = 0.0  # the raw tensor the convs read is input + raw_offset (kept as an Add node)

    @property
    def raw_tensor(self) -> str:
        """Name of the float tensor the folded convs read (before any commuting ops)."""
        c = self.contract
        if self.raw_offset:
            return f"{c.name}/raw_centred"
        return f"{c.name}/raw_f32" if c.dtype != "float32" else c.name


@dataclass(frozen=True)
class FoldPlan:
    chains: tuple[ChainPlan, ...]
    skipped: tuple[tuple[str, str], ...]  # (graph input, reason)
