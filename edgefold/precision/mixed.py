"""Mixed precision by measurement: which quantised layers to keep in float so an INT8 model meets its floor.

Polygraphy's ``debug precision`` bisects layer precisions on a real engine; this does the same before
TensorRT, on the Q/DQ model in onnxruntime. A layer "kept in float" loses the Q/DQ pairs in front of its
inputs (activation and weight), so TensorRT runs it in FP16 on 10.x (the FP16 builder flag is set with
INT8) and in the precision of the ONNX on 11.x (strongly typed: float16 where the Q/DQ model was written in
float16, ``fp16.to_fp16``). Layers are known by their first output tensor (``graph.names.node_key``): node names
are optional and may repeat.

1. Sensitivity: for each quantised layer, the model with only that layer quantised is run on a few
   calibration frames; the output error it causes alone ranks the layers.
2. Search: keep the k most sensitive layers in float, with k growing 1, 2, 4, ... until the floor holds on
   the frames, then bisect down to the smallest such k. Every step is one onnxruntime evaluation.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from edgefold.graph.index import _subgraph_reads
from edgefold.graph.names import node_key
from edgefold.precision.weights import QUANTIZED_OPS


def quantized_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The ops whose weight arrives through a DequantizeLinear (in graph order)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and len(n.input) > 1
            and getattr(producer.get(n.input[1]), "op_type", None) == "DequantizeLinear"]


def quantized_layers(model: onnx.ModelProto) -> list[str]:
    """The ops whose weight arrives through a DequantizeLinear, by first output tensor (in graph order)."""
    return [node_key(n) for n in quantized_nodes(model)]


def int8_mac_share(model: onnx.ModelProto, size: tuple[int, int] | None) -> float | None:
    """The share of Conv/ConvTranspose/Gemm/MatMul MACs that run in INT8, for one frame of ``size`` (H, W)
    when the input is dynamic; None when a MAC count is unknown."""
    from edgefold.graph.shapes import specialise
    from edgefold.inspect.count import inventory

    counted = onnx.ModelProto()
    counted.CopyFrom(model)
    # a dim without a positive dim_value is dynamic: symbolic, unnamed, or Paddle's -1
    if size is not None and any(d.dim_value <= 0 for d in counted.graph.input[0].type.tensor_type.shape.dim[-2:]):
        counted = specialise(counted, size)
    for vi in counted.graph.input:  # one frame: a dynamic batch is 1
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_value <= 0:
                d.dim_value = 1
    layers = [layer for layer in inventory(counted).layers if layer.op in QUANTIZED_OPS]
    if not layers or any(layer.macs is None for layer in layers):
        return None
    int8 = {node_key(n) for n in quantized_nodes(model)}  # by output: node names may be empty or repeat
    total = sum(layer.macs or 0 for layer in layers)
    return sum(layer.macs or 0 for layer in layers if layer.output in int8) / total if total else None


def keep_float(model: onnx.ModelProto, layers: set[str] | frozenset[str]) -> onnx.ModelProto:
    """A copy where the ``layers`` (by first output tensor) read their inputs without Q/DQ: the float weight and
    the float activation the Q/DQ pairs had in front of them - float16 in a model written in float16."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if node_key(n) not in layers:
            continue
        for pos, name in enumerate(n.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                n.input[pos] = q.input[0]
    _prune_qdq(g)
    return out


def _prune_qdq(g: onnx.GraphProto) -> None:
    outputs = {o.name for o in g.output}
    nodes = list(g.node)
    while True:
        read = {name for n in nodes for name in (*n.input, *_subgraph_reads(n))} | outputs
        alive = [n for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                 or any(o in read for o in n.output)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    used = {name for n in nodes for name in (*n.input, *_subgraph_reads(n))}
    kept_inits = [t for t in g.initializer if t.name in used or t.name in outputs]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(kept_inits)


def output_error(refs: list[list[np.ndarray]], gots: list[list[np.ndarray]]) -> float:
    """Mean over outputs of the squared error relative to the reference's energy (0 = equal)."""
    errs = []
    for k in range(len(refs[0])):
        num = sum(float(np.sum((np.asarray(g[k], np.float64) - r[k]) ** 2)) for r, g in zip(refs, gots))
        den = sum(float(np.sum(np.asarray(r[k], np.float64) ** 2)) for r in refs)
        errs.append(num / den if den > 0 else num)
    return float(np.mean(errs))


@dataclass(frozen=True)
class SearchResult:
    kept_float: tuple[str, ...]  # the layers kept in float (by first output), most sensitive first
    ranking: tuple[tuple[str, float], ...]  # every quantised layer with its sensitivity, most sensitive first
    steps: tuple[tuple[int, bool], ...]  # (k, passed) in the order evaluated
    seconds: float
    exhausted: bool  # the time budget ran out before the search finished


def rank_layers(model: onnx.ModelProto, run: Callable[[onnx.ModelProto], list[list[np.ndarray]]],
                reference: list[list[np.ndarray]], deadline: float, progress: bool = False
                ) -> list[tuple[str, float]]:
    """Each quantised layer alone: the output error it causes (higher = more sensitive)."""
    from tqdm import tqdm

    layers = quantized_layers(model)
    scores: list[tuple[str, float]] = []
    for layer in tqdm(layers, desc="layer sensitivity", unit="layer", disable=not progress, leave=False):
        if time.monotonic() > deadline:  # unranked layers keep graph order at the end
            scores += [(n, -1.0) for n in layers[len(scores):]]
            break
        only = keep_float(model, frozenset(layers) - {layer})
        scores.append((layer, output_error(reference, run(only))))
    return sorted(scores, key=lambda t: -t[1])


def search(model: onnx.ModelProto, ranking: list[tuple[str, float]], passes: Callable[[onnx.ModelProto], bool],
           deadline: float, progress: bool = False) -> tuple[onnx.ModelProto | None, SearchResult]:
    """The smallest k such that the k most sensitive layers in float meet the floor, and the record of the
    search; the model is None when no k tried did (the floor needs more than float layers, or time ran out)."""
    from tqdm import tqdm

    t0 = time.monotonic()
    order = [n for n, _ in ranking]
    steps: list[tuple[int, bool]] = []
    models: dict[int, onnx.ModelProto] = {}
    bar = tqdm(desc="mixed-precision search", unit="try", disable=not progress, leave=False)

    def trial(k: int) -> bool:
        models[k] = keep_float(model, frozenset(order[:k]))
        ok = passes(models[k])
        steps.append((k, ok))
        bar.update(1)
        return ok

    lo, hi, k, exhausted = 0, None, 1, False  # lo: largest k known to fail; hi: smallest known to pass
    while hi is None and lo < len(order):
        k = min(max(k, 1), len(order))
        if time.monotonic() > deadline:
            exhausted = True
            break
        if trial(k):
            hi = k
        else:
            lo, k = k, 2 * k
    while hi is not None and hi - lo > 1 and not exhausted:
        if time.monotonic() > deadline:
            exhausted = True
            break
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    bar.close()
    result = SearchResult(tuple(order[:hi or 0]), tuple(ranking), tuple(steps), time.monotonic() - t0, exhausted)
    return (None if hi is None else models[hi]), result
