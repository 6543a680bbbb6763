"""ONNX for the DCT front end: standalone, or prepended to a DCT-domain model and merged into its first
layer when that layer is linear (a 1x1 conv or BatchNormalization), so the engine takes raw frames; the merge
checked against running the front end and the model separately (``check_prepended``)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold import verdict
from edgefold.core.contract import Meta
from edgefold.errors import UnsupportedGraph, UsageError, VerificationFailed
from edgefold.folding.border import grouped_matrix
from edgefold.frontend.dct import DctSpec
from edgefold.graph.index import GraphIndex, attrs
from edgefold.graph.names import FreshNames, node_key

if TYPE_CHECKING:
    from edgefold.folding.verify import Verification

OPSET = 17


def _contract(name: str, dtype: str, spec: DctSpec, shape: list) -> dict:
    return {"name": name, "dtype": dtype, "layout": "NCHW", "channels": spec.raw_channels,
            "channel_order": "gray" if spec.raw_channels == 1 else "rgb", "shape": shape, "channel_axis": 1,
            "pixel_range": [0.0, 255.0]}


def _stamp(model: onnx.ModelProto, contract: dict, spec: DctSpec) -> None:
    model.metadata_props.add(key=Meta.INPUT_CONTRACTS, value=json.dumps([contract]))
    model.metadata_props.add(key=Meta.FRONTEND, value=json.dumps(
        {"kind": "dct8x8", "components": spec.components, "order": spec.order, "level_shift": spec.level_shift,
         "channels": [[c, i] for c, i in spec.channels()]}))


def frontend_model(spec: DctSpec, input_name: str = "image", dtype: str = "uint8",
                   height: int | str = "height", width: int | str = "width") -> onnx.ModelProto:
    """raw (N, J, H, W) -> Cast -> 8x8/s8 conv -> (N, C, H/8, W/8) coefficients named ``dct``."""
    w, b = spec.weights()
    shape: list[int | str | None] = ["batch", spec.raw_channels, height, width]
    nodes, x = [], input_name
    if dtype != "float32":
        nodes.append(helper.make_node("Cast", [x], [f"{x}/f32"], name="edgefold/cast", to=onnx.TensorProto.FLOAT))
        x = f"{x}/f32"
    nodes.append(helper.make_node("Conv", [x, "dct/W", "dct/B"], ["dct"], name="dct8x8", kernel_shape=[8, 8],
                                  strides=[8, 8]))
    graph = helper.make_graph(
        nodes, "edgefold_dct", [helper.make_tensor_value_info(input_name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                              shape)],
        [helper.make_tensor_value_info("dct", onnx.TensorProto.FLOAT, ["batch", len(spec.channels()), None, None])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), "dct/W"),
                     numpy_helper.from_array(b.astype(np.float32), "dct/B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgefold")
    model.ir_version = 8
    _stamp(model, _contract(input_name, dtype, spec, shape), spec)
    onnx.checker.check_model(model)
    return model


def _linear_first_layer(index: GraphIndex, name: str, channels: int):
    """(node, matrix (C', C), offset (C',)) when the input's only reader is a 1x1 conv or a BN, else None."""
    readers = index.consumers.get(name, [])
    if len(readers) != 1:
        return None
    node = readers[0]
    a = attrs(node)
    if node.op_type == "Conv" and node.input[0] == name:
        w = index.constant(node.input[1])
        bias = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        pointwise = (w is not None and w.shape[2:] == (1, 1) and all(s == 1 for s in a.get("strides", [1, 1]))
                     and not any(a.get("pads", [])) and a.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))
        if not pointwise or (len(node.input) > 2 and node.input[2] and bias is None):
            return None
        assert w is not None
        m = grouped_matrix(w[:, :, 0, 0].astype(np.float64), int(a.get("group", 1)))
        return node, m, (bias.astype(np.float64) if bias is not None else np.zeros(m.shape[0]))
    if node.op_type == "BatchNormalization" and not a.get("training_mode", 0):
        vals = [index.constant(i) for i in node.input[1:5]]
        if any(v is None for v in vals):
            return None
        scale, beta, mean, var = (v.astype(np.float64) for v in vals)  # type: ignore[union-attr]
        k = scale / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        return node, np.diag(k), beta - mean * k
    return None


def prepend(model: onnx.ModelProto, spec: DctSpec, input_name: str | None = None, dtype: str = "uint8"
            ) -> tuple[onnx.ModelProto, str]:
    """The DCT-domain ``model`` taking raw pixels; returns (model, what was merged)."""
    index = GraphIndex(model)
    images = [vi for vi in index.real_inputs if len(vi.type.tensor_type.shape.dim) == 4]
    if len(images) != 1:
        raise UnsupportedGraph(f"expected one (N, C, H/8, W/8) coefficient input, found {len(images)} rank-4 inputs")
    old = images[0]
    dims = old.type.tensor_type.shape.dim
    n_coef = len(spec.channels())
    if not dims[1].HasField("dim_value") or dims[1].dim_value != n_coef:
        raise UsageError(f"input '{old.name}' has {dims[1].dim_value or '?'} channels, the front end selects "
                         f"{n_coef}: give the --select/--select-low the model was trained with")
    spatial = [d.dim_value * 8 if d.HasField("dim_value") else (f"{d.dim_param}_x8" if d.dim_param else None)
               for d in dims[2:]]
    batch = dims[0].dim_value if dims[0].HasField("dim_value") else (dims[0].dim_param or "batch")
    w, b = spec.weights()
    o = onnx.ModelProto()
    o.CopyFrom(model)
    g = o.graph
    merged = "nothing (the first layer is not linear): the front end feeds the model's input"
    target = old.name
    first = _linear_first_layer(index, old.name, n_coef)
    # the coefficient tensor keeps its name when the front end only feeds it, so the pixels need another
    name = input_name or (old.name if first is not None else f"{old.name}_pixels")
    keep = list(g.node)
    if first is not None:
        node, m, off = first
        w = np.einsum("pc,cjxy->pjxy", m, w)
        b = m @ b + off
        target = node.output[0]
        position = next(i for i, n in enumerate(model.graph.node) if n is node)
        keep = [n for i, n in enumerate(g.node) if i != position]
        merged = (f"{node.op_type} '{node.name or node_key(node)}' ({n_coef} -> {m.shape[0]} channels) merged into "
                  f"the 8x8 conv")
    if name == target or name in {o for n in keep for o in n.output}:
        raise UsageError(f"--input-name {name} is already a tensor of the model; choose another")
    x = name
    pre = []
    fresh = FreshNames(g)  # the model's own names (which may be anything, or missing) stay as they are
    fresh.name(name)
    if dtype != "float32":
        x = fresh.name(f"{name}/f32")
        pre.append(helper.make_node("Cast", [name], [x], name=fresh.name("edgefold/cast"), to=onnx.TensorProto.FLOAT))
    w_name, b_name = fresh.name("edgefold/dct_W"), fresh.name("edgefold/dct_B")
    pre.append(helper.make_node("Conv", [x, w_name, b_name], [target], name=fresh.name("edgefold/dct8x8"),
                                kernel_shape=[8, 8], strides=[8, 8]))
    del g.node[:]
    g.node.extend(pre + keep)
    g.initializer.extend([numpy_helper.from_array(w.astype(np.float32), w_name),
                          numpy_helper.from_array(b.astype(np.float32), b_name)])
    pos = [i.name for i in g.input].index(old.name)
    shape: list[int | str | None] = [batch, spec.raw_channels, *spatial]
    g.input[pos].CopyFrom(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape))
    del g.value_info[:]
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    if not any(op.domain in ("", "ai.onnx") and op.version >= 11 for op in o.opset_import):
        raise UnsupportedGraph("the DCT-domain model's opset is below 11")
    _stamp(o, _contract(name, dtype, spec, shape), spec)
    onnx.checker.check_model(o)
    return o, merged


def check_prepended(original: onnx.ModelProto, model: onnx.ModelProto, spec: DctSpec, dtype: str,
                    rtol: float = 1e-4, atol: float = 1e-6) -> Verification:
    """``model`` (``prepend``'s result) against the front end then ``original`` in onnxruntime, on random,
    black and white frames, judged per frame by the fp32 verdict (``edgefold.verdict``): within the fixed bound,
    or within K times the original's own float32 noise floor there (measured only where the bound fails).
    Raises VerificationFailed."""
    from edgefold.backends.ort import session
    from edgefold.folding.verify import judge

    front = frontend_model(spec, "image", "float32")
    s_front, s_new = session(front), session(model)
    probe = verdict.NoiseProbe(original)
    coef_name, pixels_name = original.graph.input[0].name, model.graph.input[0].name
    dims = original.graph.input[0].type.tensor_type.shape.dim
    h, w = 8 * (dims[2].dim_value or 12), 8 * (dims[3].dim_value or 16)
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 256, (1, spec.raw_channels, h, w)), np.zeros((1, spec.raw_channels, h, w)),
              np.full((1, spec.raw_channels, h, w), 255))
    coefs = [s_front.run(None, {"image": f.astype(np.float32)})[0] for f in frames]
    refs = [probe.outputs({coef_name: c}) for c in coefs]
    gots = [s_new.run(probe.names, {pixels_name: f.astype(dtype)}) for f in frames]
    v = judge(probe.names, refs, gots, rtol, atol,
              lambda: [probe.run({coef_name: c}).floors for c in coefs] if probe.measures else None,
              ((h, w),), "merged model")
    if not v.passed:
        raise VerificationFailed(f"the merged model differs from front end + model: {v.worst_text()}; "
                                 f"{v.worst.decided_by}; nothing written")
    return v
