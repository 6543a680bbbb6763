"""The recogniser framework: a node in its context (``NodeCtx``), what a recogniser returns (``Step``) or
raises (``Refusal``), and the helpers every op family shares."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import onnx

from edgefold.core.affine import ChannelAffine
from edgefold.folding import shapefn
from edgefold.folding.plan import ConvFold, Lin, RawOp
from edgefold.graph.index import GraphIndex, attrs

INTEGER_TYPES = {onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64,
                 onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64}


class Refusal(Exception):
    def __init__(self, message: str, via: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.via = via


@dataclass(frozen=True)
class Step:
    outputs: dict[str, Lin]
    raw_op: RawOp | None = None
    terminal: ConvFold | None = None
    arithmetic: bool = False
    # a Shape of a derived tensor: the walk decides at the end whether anything kept reads it
    shape_read: str | None = None


@dataclass
class NodeCtx:
    index: GraphIndex
    node: onnx.NodeProto
    node_id: int
    lin: dict[str, Lin]
    terminal_ids: frozenset[int]
    border_mode: str
    input_name: str = ""  # the graph input of this chain (shape-only tensors are functions of its shape)
    trials: tuple[tuple[int, ...], ...] = ()  # concrete input shapes to evaluate those at

    @property
    def label(self) -> str:
        return self.index.node_label(self.node)

    @property
    def attrs(self) -> dict:
        return attrs(self.node)

    def input(self, i: int) -> str:
        return self.node.input[i] if i < len(self.node.input) else ""

    def lin_in(self, i: int) -> Lin | None:
        return self.lin.get(self.input(i))

    def const_in(self, i: int) -> np.ndarray | None:
        name = self.input(i)
        return self.index.constant(name) if name else None

    def shape_only(self, i: int) -> list[np.ndarray] | None:
        """Input ``i`` at each trial input shape when it is a constant or a function of the input's shape."""
        name = self.input(i)
        if not name or name in self.lin:
            return None
        const = self.index.constant(name)
        if const is not None:
            return [const] * max(1, len(self.trials))
        return shapefn.evaluate(self.index, self.input_name, list(self.trials), self.lin, name)

    def shape_only_at_probes(self, i: int) -> tuple[list[tuple[int, ...]], list[np.ndarray]] | None:
        """(probe input shapes, input ``i`` at each) for a piecewise function of the input's size (a padding
        amount); one probe when the input's size is static."""
        name = self.input(i)
        dims = self.index.shapes.get(self.input_name)
        if not name or name in self.lin or dims is None:
            return None
        probes = shapefn.probe_inputs(list(dims))
        const = self.index.constant(name)
        if const is not None:
            return probes[:1], [const]
        return shapefn.evaluate_where_defined(self.index, self.input_name, probes, self.lin, name)

    def shapes_of(self, lin: Lin) -> list[tuple[int, ...]] | None:
        shapes = [shapefn.lin_shape(lin, t) for t in self.trials]
        return None if not shapes or any(s is None for s in shapes) else shapes  # type: ignore[return-value]

    def refuse(self, why: str, lin: Lin | None = None) -> Refusal:
        return Refusal(f"node {self.label}: {why}", lin.via if lin else ())

    def require_const(self, i: int, what: str) -> np.ndarray:
        v = self.const_in(i)
        if v is None:
            raise self.refuse(f"{what} '{self.input(i)}' is not a constant, so the map is not affine")
        return v

    def only_data_lin(self, lin_positions: tuple[int, ...] = (0,)) -> Lin:
        for i, name in enumerate(self.node.input):
            if name in self.lin and i not in lin_positions:
                raise self.refuse(f"the normalised tensor feeds input {i}, which cannot be folded")
        lin = self.lin_in(lin_positions[0])
        assert lin is not None
        return lin

    def single_output(self, lin: Lin) -> str:
        outs = [o for o in self.node.output if o]
        if len(outs) != 1:
            raise self.refuse("has extra outputs", lin)
        return outs[0]


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def per_channel(ctx: NodeCtx, const: np.ndarray, lin: Lin) -> np.ndarray:
    """A constant operand as a per-channel vector (length 1 or C'), or a refusal if it varies in space."""
    c = np.asarray(const, dtype=np.float64)
    if c.ndim > lin.rank:
        raise ctx.refuse(f"constant of shape {c.shape} has more axes than the tensor (rank {lin.rank})", lin)
    shape = (1,) * (lin.rank - c.ndim) + c.shape
    for ax, d in enumerate(shape):
        if lin.lane and d != 1:
            raise ctx.refuse(f"constant of shape {c.shape} varies along axis {ax} of a channel lane (one channel "
                             f"selected with a scalar index); only scalar constants are per-pixel affine", lin)
        if ax != lin.axis and d != 1:
            raise ctx.refuse(f"constant of shape {c.shape} varies along axis {ax}, not only over channels "
                             f"(axis {lin.axis}): a per-pixel mean image is not supported", lin)
    vec = c.reshape(-1)
    if vec.size not in (1, lin.affine.out_channels) and lin.affine.out_channels != 1:
        raise ctx.refuse(f"constant has {vec.size} channels, the tensor {lin.affine.out_channels}", lin)
    return vec


def _with(lin: Lin, affine: ChannelAffine | None = None, **kw) -> Lin:
    return dataclasses.replace(lin, **kw) if affine is None else dataclasses.replace(lin, affine=affine, **kw)




def _raw(ctx: NodeCtx, lin: Lin, *outs: str, axis: int | None = None,
         patched: tuple[tuple[int, np.ndarray], ...] = (),
         masked: tuple[tuple[int, np.ndarray, np.ndarray], ...] = ()) -> Step:
    raw_op = RawOp(ctx.node_id, ((0, lin.raw),), tuple(outs), patched, masked_inputs=masked)
    new_axis = lin.axis if axis is None else axis
    return Step({o: _with(lin, raw=o, axis=new_axis, frame=None) for o in outs if o}, raw_op=raw_op)


