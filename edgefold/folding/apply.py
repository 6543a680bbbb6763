"""The one place that edits the graph: writes a ``FoldPlan`` into a copy of the model (or into the model).

Everything else in the model - node order, names, metadata, untouched weights - stays as it was; value_info
is inferred anew (a recorded one may be stale). The preprocessing nodes are deleted, commuting ops are
re-created on the raw tensor (``NAME/raw``), each target Conv gets new weights (``NAME/folded_W``), and where
the border term is needed its output becomes ``OUT/pre_border`` and an ``Add`` restores the original name.
NAME is the node's name, or its output for an unnamed one; every added name is fresh (``graph.names``), so
unnamed or repeated node names cannot collide, and the metadata records nodes by their outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgefold.core.contract import Meta, write_meta
from edgefold.folding import border
from edgefold.folding.plan import RAW_INPUT, ChainPlan, FoldPlan
from edgefold.graph import io as graph_io
from edgefold.graph.index import _subgraph_reads
from edgefold.graph.names import FreshNames, node_key


def apply_plan(model: onnx.ModelProto, plan: FoldPlan, *, in_place: bool = False) -> onnx.ModelProto:
    """The folded model: a copy, or ``model`` itself with ``in_place`` (the caller loaded it and no longer
    needs the original - a model of 100 MB then costs one copy less)."""
    if in_place:
        out = model
    else:
        out = onnx.ModelProto()
        out.CopyFrom(model)
    g = out.graph
    nodes = list(g.node)
    head: list[onnx.NodeProto] = []
    replace: dict[int, list[onnx.NodeProto]] = {}
    new_inits: list[onnx.TensorProto] = []
    candidates: set[str] = set()  # tensors that may have lost their last reader
    fresh = FreshNames(g)
    written = [_write_chain(g, nodes, chain, head, replace, new_inits, candidates, fresh) for chain in plan.chains]
    rebuilt = list(head)
    for i, node in enumerate(nodes):
        rebuilt.extend(replace.get(i, [node]))
    del g.node[:]
    g.node.extend(rebuilt)
    g.initializer.extend(new_inits)
    _prune(g, candidates)
    _refresh_shapes(out)
    _stamp(out, plan, head, written)
    return out


def _refresh_shapes(model: onnx.ModelProto) -> None:
    """value_info inferred anew from the inputs: a recorded shape can be stale (a user who made a dimension
    dynamic by editing the input), and onnxruntime plans buffers from it - the original runs, the folded
    model with its new nodes would not."""
    try:
        inferred = onnx.shape_inference.infer_shapes(graph_io.skeleton(model, value_info=False),
                                                     strict_mode=False, data_prop=True)
        fresh = list(inferred.graph.value_info)
    except Exception:  # noqa: BLE001 - inference is best effort; no value_info is valid ONNX
        fresh = []
    del model.graph.value_info[:]
    model.graph.value_info.extend(fresh)


def _stamp(model: onnx.ModelProto, plan: FoldPlan, head: list[onnx.NodeProto], written: list[_Written]) -> None:
    """Record what was folded in the model's metadata, for inspect, build and the runtime to read: nodes by their
    output tensors (node names are optional and may repeat)."""
    import json

    from edgefold.folding.verify import chain_feeds
    from edgefold.version import __version__

    write_meta(model, {
        Meta.VERSION: __version__,
        Meta.FOLDED_CONVS: json.dumps([node_key(n) for w in written for n in w.convs]),
        Meta.INPUT_CONTRACTS: json.dumps([chain.contract.to_json() for chain in plan.chains]),
        # how the original model's input receives a raw frame: compare rebuilds its reference feed from it
        Meta.SOURCE_INPUTS: json.dumps([chain_feeds(chain)[0].to_json() for chain in plan.chains]),
        Meta.RAW_TENSORS: json.dumps([w.raw_tensor for w in written]),
        Meta.RAW_OFFSET: json.dumps([chain.raw_offset for chain in plan.chains]),
        # the nodes edgefold added (input cast, re-centring, border term): precision passes leave them in float
        Meta.HELPER_NODES: json.dumps([node_key(n) for n in head] + [node_key(n) for w in written for n in w.helpers]),
    })


@dataclass
class _Written:
    """What one chain's rewrite made: the folded convs, the border-term nodes, the float tensor the convs read."""

    raw_tensor: str
    convs: list[onnx.NodeProto] = field(default_factory=list)
    helpers: list[onnx.NodeProto] = field(default_factory=list)


def _write_chain(g: onnx.GraphProto, nodes: list[onnx.NodeProto], chain: ChainPlan, head: list,
                 replace: dict[int, list[onnx.NodeProto]], new_inits: list, candidates: set[str],
                 fresh: FreshNames) -> _Written:
    c = chain.contract
    # the new input, at the position of the old one
    pos = [i.name for i in g.input].index(chain.input_name)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(c.dtype))
    new_vi = helper.make_tensor_value_info(c.name, elem, [d if d is not None else None for d in c.shape])
    g.input[pos].CopyFrom(new_vi)
    raw_names: dict[str, str] = {}
    if c.dtype != "float32":
        cast_out = fresh.name(chain.raw_tensor if not chain.raw_offset else f"{c.name}/raw_f32")
        head.append(helper.make_node("Cast", [c.name], [cast_out], name=fresh.name(f"edgefold/{c.name}/cast"),
                                     to=onnx.TensorProto.FLOAT))
        raw_names[RAW_INPUT] = cast_out
    else:
        raw_names[RAW_INPUT] = c.name
    if chain.raw_offset:
        offset = fresh.name(f"edgefold/{c.name}/raw_offset")
        centred = fresh.name(chain.raw_tensor)
        new_inits.append(numpy_helper.from_array(np.array(chain.raw_offset, np.float32), offset))
        head.append(helper.make_node("Add", [raw_names[RAW_INPUT], offset], [centred],
                                     name=fresh.name(f"edgefold/{c.name}/recentre")))
        raw_names[RAW_INPUT] = centred
    written = _Written(raw_names[RAW_INPUT])

    for node_id in chain.removed:
        candidates.update(i for i in nodes[node_id].input if i)
        replace[node_id] = []
    for op in chain.raw_ops:
        orig = nodes[op.node_id]
        clone = onnx.NodeProto()
        clone.CopyFrom(orig)
        clone.name = fresh.name(f"{orig.name or node_key(orig)}/raw")
        for pos_in, key in op.raw_inputs:
            clone.input[pos_in] = raw_names[key]
        for pos_in, value in op.patched_inputs:
            init_name = fresh.name(f"{clone.name}/input{pos_in}")
            new_inits.append(numpy_helper.from_array(value, init_name))
            clone.input[pos_in] = init_name
        pieces = []
        for pos_in, mask, value in op.masked_inputs:  # a shape-computed operand with its channel entry replaced
            base = fresh.name(f"{clone.name}/input{pos_in}")
            mask_name, value_name = fresh.name(f"{base}/mask"), fresh.name(f"{base}/value")
            new_inits.extend([numpy_helper.from_array(mask, mask_name), numpy_helper.from_array(value, value_name)])
            pieces.append(helper.make_node("Where", [mask_name, value_name, clone.input[pos_in]], [base],
                                           name=base))
            clone.input[pos_in] = base
        for k, o in enumerate(clone.output):
            if o and not op.keep_outputs:
                clone.output[k] = raw_names[o] = fresh.name(f"{o}/raw")
        replace[op.node_id] = pieces + [clone]

    for fold in chain.convs:
        node = nodes[fold.node_id]
        key = fresh.prefix(node.name or node_key(node))
        candidates.update(i for i in node.input[1:] if i)
        node.input[0] = raw_names[fold.raw]
        w_name = f"{key}/folded_W"
        new_inits.append(numpy_helper.from_array(fold.weight, w_name))
        node.input[1] = w_name
        if fold.bias is not None:
            b_name = f"{key}/folded_B"
            new_inits.append(numpy_helper.from_array(fold.bias, b_name))
            if len(node.input) > 2:
                node.input[2] = b_name
            else:
                node.input.append(b_name)
        _set_group(node, fold.group)
        if fold.attrs_override:
            for a in [a for a in node.attribute if a.name in set(fold.attrs_override) | {"auto_pad"}]:
                node.attribute.remove(a)
            node.attribute.extend(helper.make_attribute(k, v) for k, v in fold.attrs_override.items()
                                  if v is not None)  # None: the attribute is dropped
        pieces = [node]
        if fold.correction is not None and fold.correction.strips is not None:
            pieces, corr_inits, corr_helpers = border.strip_nodes(key, fold, nodes, node.input[0], fold.weight.dtype)
            new_inits.extend(corr_inits)
            written.helpers.extend(corr_helpers)
            # the folded conv's copies on the edge strips read the same weight: folded convs too (float-first INT8)
            written.convs.extend([node] + [n for n in pieces if n.op_type == "Conv" and n.input[1] == w_name
                                           and n is not node])
            for node_id in fold.correction.strips.chain + (fold.correction.strips.tail,):
                replace[node_id] = []
        elif fold.correction is not None:
            final = node.output[0]
            node.output[0] = f"{key}/pre_border"
            corr_nodes, corr_inits = border.correction_nodes(key, fold.correction, node.input[0],
                                                             f"{key}/border_term", fold.weight.dtype)
            new_inits.extend(corr_inits)
            add = helper.make_node("Add", [node.output[0], f"{key}/border_term"], [final], name=f"{key}/border_add")
            pieces = corr_nodes + [node, add]
            written.helpers.extend(corr_nodes + [add])
        if not any(c is node for c in written.convs):
            written.convs.append(node)
        replace[fold.node_id] = pieces
    return written


def _set_group(node: onnx.NodeProto, group: int) -> None:
    for a in node.attribute:
        if a.name == "group":
            a.i = group
            return
    if group != 1:
        node.attribute.append(helper.make_attribute("group", group))


def _prune(g: onnx.GraphProto, candidates: set[str]) -> None:
    """Drop initializers, Constant nodes and constant subgraphs that only the removed nodes read."""
    while True:
        used = {o.name for o in g.output}
        for node in g.node:
            used.update(i for i in node.input if i)
            used |= _subgraph_reads(node)
        dead = [n for n in g.node if any(o in candidates for o in n.output) and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            candidates.update(i for i in n.input if i)
            g.node.remove(n)
    for i in range(len(g.initializer) - 1, -1, -1):  # in place: re-adding the kept ones would copy every weight
        t = g.initializer[i]
        if t.name not in used and t.name in candidates:
            del g.initializer[i]
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
    vis = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vis)
