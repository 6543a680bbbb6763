"""A learned 1 -> 3 adapter conv in front of a pretrained 3-channel backbone, composed into one conv.

``Conv_B(Conv_A(x))`` with nothing nonlinear between is one conv over x: stride ``s_B`` (A has stride 1),
kernel ``d_B (k_B - 1) + d_A (k_A - 1) + 1`` (dense, dilation 1), pads added, and A's bias pushed through
B: ``K[o, a d_B + p d_A, b d_B + q d_A] += W_B[o, c, a, b] W_A[c, 0, p, q]``,
``beta = beta_B + sum W_B[o, c, a, b] beta_A[c]``. Exact when B has no padding: B's zero padding of A's
*output* is not a zero padding of the image, so with a padded B the composition is exact only in the
interior (``--border approx`` composes anyway and reports the border error it leaves). 1x1 adapters are
per-pixel affine and take the general fold path, border term included.
"""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.errors import UnsupportedGraph
from edgefold.folding.plan import RAW_INPUT, BorderScheme, ConvFold, Lin
from edgefold.graph.index import GraphIndex, attrs


def find_adapter(index: GraphIndex, input_name: str) -> tuple[list[int], int, int] | None:
    """(removed node ids, adapter id, backbone conv id) for input -> [Cast] -> Conv(1->3, k>1) -> Conv."""
    pos = {id(n): i for i, n in enumerate(index.nodes)}
    removed = []
    tensor = input_name
    readers = index.consumers.get(tensor, [])
    if len(readers) == 1 and readers[0].op_type == "Cast" and attrs(readers[0]).get("to") == onnx.TensorProto.FLOAT:
        removed.append(pos[id(readers[0])])
        tensor = readers[0].output[0]
        readers = index.consumers.get(tensor, [])
    if len(readers) != 1 or readers[0].op_type != "Conv" or readers[0].input[0] != tensor:
        return None
    adapter = readers[0]
    w = index.constant(adapter.input[1])
    if w is None or w.ndim != 4 or w.shape[1] != 1 or w.shape[0] != 3 or w.shape[2:] == (1, 1):
        return None
    out = adapter.output[0]
    nxt = index.consumers.get(out, [])
    label = index.node_label(adapter)
    if out in index.output_names or len(nxt) != 1:
        raise UnsupportedGraph(f"adapter {label} feeds more than one node: it cannot be composed into one conv")
    backbone = nxt[0]
    if backbone.op_type != "Conv" or backbone.input[0] != out:
        raise UnsupportedGraph(f"adapter {label} is followed by {index.node_label(backbone)}, not a convolution: "
                               f"composing through a nonlinearity would not be exact")
    return removed + [pos[id(adapter)]], pos[id(adapter)], pos[id(backbone)]


def compose(index: GraphIndex, adapter_id: int, backbone_id: int, border_mode: str) -> tuple[ConvFold, dict]:
    """The backbone conv rewritten to read the raw input, and its new attributes."""
    a_node, b_node = index.nodes[adapter_id], index.nodes[backbone_id]
    label = index.node_label(a_node)
    kernel, bias, new_attrs, padded = composite(index, a_node, b_node)
    if padded and border_mode != "approx":
        raise UnsupportedGraph(f"adapter {label} feeds {index.node_label(b_node)}, which zero-pads the adapter's "
                               f"output: one conv reproduces that only in the interior; pass --border approx to "
                               f"compose anyway (the report gives the border error)")
    w2_shape = tuple(index.constant(b_node.input[1]).shape)  # type: ignore[union-attr]
    border = BorderScheme.ADAPTER_EXACT if not padded else BorderScheme.APPROX
    note = ("composed: the backbone conv has no padding, so every tap of the adapter is inside" if not padded
            else "composed approximately: the backbone's padding of the adapter output is not reproduced at the border")
    dummy = Lin(RAW_INPUT, _identity(1), 1, 4, True)
    fold = ConvFold(backbone_id, b_node.name or b_node.output[0], dummy.raw, dummy.affine, kernel.astype(np.float32),
                    bias.astype(np.float32), 1, w2_shape, None, border, note, new_attrs)
    return fold, new_attrs


def composite(index: GraphIndex, a_node: onnx.NodeProto, b_node: onnx.NodeProto
              ) -> tuple[np.ndarray, np.ndarray, dict, bool]:
    """(kernel (O, 1, kh, kw), bias, attributes, whether B pads A's output) of the one conv equal to
    ``B(A(x))`` for a single-channel adapter A (stride 1, group 1) and a conv B, float64; raises
    ``UnsupportedGraph`` naming the node when they cannot be composed."""
    a_attrs, b_attrs = attrs(a_node), attrs(b_node)
    label = index.node_label(a_node)
    for node, at in ((a_node, a_attrs), (b_node, b_attrs)):
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise UnsupportedGraph(f"{index.node_label(node)} uses auto_pad SAME: give explicit pads to compose the "
                                   f"adapter")
    if any(s != 1 for s in a_attrs.get("strides", [1, 1])) or int(a_attrs.get("group", 1)) != 1:
        raise UnsupportedGraph(f"adapter {label} is strided or grouped: its composition with the backbone's first "
                               f"conv would change the output size; not composed")
    w1 = index.constant(a_node.input[1]).astype(np.float64)  # type: ignore[union-attr]
    b1 = _bias(index, a_node, w1.shape[0])
    w2 = index.constant(b_node.input[1])
    if w2 is None:
        raise UnsupportedGraph(f"{index.node_label(b_node)}: weight is not a constant")
    w2 = w2.astype(np.float64)
    b2 = _bias(index, b_node, w2.shape[0])
    g2 = int(b_attrs.get("group", 1))
    d1 = list(a_attrs.get("dilations", [1, 1]))
    d2 = list(b_attrs.get("dilations", [1, 1]))
    p1 = list(a_attrs.get("pads", [0, 0, 0, 0])) if a_attrs.get("auto_pad", b"NOTSET") != b"VALID" else [0] * 4
    p2 = list(b_attrs.get("pads", [0, 0, 0, 0])) if b_attrs.get("auto_pad", b"NOTSET") != b"VALID" else [0] * 4
    o, cg, k2h, k2w = w2.shape
    k1h, k1w = w1.shape[2:]
    kh, kw = d2[0] * (k2h - 1) + d1[0] * (k1h - 1) + 1, d2[1] * (k2w - 1) + d1[1] * (k1w - 1) + 1
    kernel = np.zeros((o, 1, kh, kw))
    og = o // g2
    w1g = w1[:, 0].reshape(g2, cg, k1h, k1w)  # the adapter channels each backbone group reads
    span_h, span_w = d1[0] * (k1h - 1) + 1, d1[1] * (k1w - 1) + 1
    for a in range(k2h):
        for b in range(k2w):
            contrib = np.einsum("gol,glpq->gopq", w2[:, :, a, b].reshape(g2, og, cg), w1g).reshape(o, k1h, k1w)
            kernel[:, 0, a * d2[0]:a * d2[0] + span_h:d1[0], b * d2[1]:b * d2[1] + span_w:d1[1]] += contrib
    bias = b2 + np.einsum("ocab,oc->o", w2, b1.reshape(g2, cg).repeat(og, axis=0))
    new_attrs = {"kernel_shape": [kh, kw], "strides": list(b_attrs.get("strides", [1, 1])), "dilations": [1, 1],
                 "pads": [p1[i] + p2[i] for i in range(4)], "group": 1}
    return kernel, bias, new_attrs, any(p2)


def _bias(index: GraphIndex, node: onnx.NodeProto, channels: int) -> np.ndarray:
    if len(node.input) < 3 or not node.input[2]:
        return np.zeros(channels)
    value = index.constant(node.input[2])
    if value is None:
        raise UnsupportedGraph(f"{index.node_label(node)}: bias is not a constant")
    return value.astype(np.float64)


def _identity(n: int):
    from edgefold.core.affine import ChannelAffine

    return ChannelAffine.identity(n)
