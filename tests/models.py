"""Exporter-realistic test models built in code (seeded), and an independent equivalence check."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from edgefold.graph.builder import IMAGENET_MEAN, IMAGENET_STD, ModelBuilder

F = onnx.TensorProto.FLOAT
MEAN4 = IMAGENET_MEAN.reshape(1, 3, 1, 1)
STD4 = IMAGENET_STD.reshape(1, 3, 1, 1)


# the ImageNet normalisation as fold/compare/build flags
NORM_FLAGS = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--scale", "255"]


def normalise(b: ModelBuilder, x: str, as_node: bool = False) -> str:
    x = b.op("Div", [x, b.const(np.float32(255.0), "k255", as_node)])
    x = b.op("Sub", [x, b.const(MEAN4, "mean", as_node)])
    return b.op("Div", [x, b.const(STD4, "std", as_node)])


def head(b: ModelBuilder, y: str, cout: int = 8) -> str:
    """A nonlinearity and a second conv after the stem, so stem errors reach the output."""
    return b.conv(b.op("Relu", [y]), cout, 4, k=3)


# ---- gray -> 3 replication patterns, each returns the 3-channel float tensor --------------------------
def rep_concat(b, x):
    return b.op("Concat", [x, x, x], axis=1)


def rep_tile(b, x):
    return b.op("Tile", [x, b.const(np.array([1, 3, 1, 1], np.int64), "reps")])


def rep_expand(b, x):
    return b.op("Expand", [x, b.const(np.array([1, 3, 1, 1], np.int64), "shape")])


def rep_legacy_expand(b, x):
    """The legacy PyTorch exporter's x.expand(-1, 3, -1, -1): ConstantOfShape/Mul/Equal/Where/Expand."""
    target = b.const(np.array([-1, 3, -1, -1], np.int64), "target")
    cos = b.op("ConstantOfShape", [b.const(np.array([4], np.int64), "four")],
               value=onnx.numpy_helper.from_array(np.array([1], np.int64), "v"))
    neg = b.op("Mul", [cos, b.const(np.array(-1, np.int64), "m1")])
    eq = b.op("Equal", [target, neg])
    shape = b.op("Where", [eq, cos, target])
    return b.op("Expand", [x, shape])


def rep_repeat(b, x):
    """x.repeat(1, 3, 1, 1) as some exporters write it: Expand to the rank, then Tile."""
    e = b.op("Expand", [x, b.const(np.array([1, 1, 1, 1], np.int64), "shape")])
    return b.op("Tile", [e, b.const(np.array([1, 3, 1, 1], np.int64), "reps")])


REPLICATIONS = {"concat": rep_concat, "tile": rep_tile, "expand": rep_expand, "legacy_expand": rep_legacy_expand,
                "repeat": rep_repeat}


def gray_model(rep: str = "concat", h=40, w=52, k=7, stride=2, pad=None, group=1, bias=True, cout=16,
               auto_pad=None, dilation=1, opset=17, as_node=False, dtype=np.uint8, seed=0) -> onnx.ModelProto:
    b = ModelBuilder(opset=opset, seed=seed)
    x = b.input("image", [1, 1, h, w], dtype)
    if dtype != np.float32:
        x = b.op("Cast", [x], to=F)
    n = normalise(b, REPLICATIONS[rep](b, x), as_node)
    y = b.conv(n, 3, cout, k=k, stride=stride, pad=pad, group=group, bias=bias, auto_pad=auto_pad,
               dilation=dilation, const_nodes=as_node, name="stem")
    return b.model([head(b, y, cout)])


def run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    model = _unique_names(model)  # onnxruntime refuses repeated node names (valid ONNX, and no value depends on them)
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def _unique_names(model: onnx.ModelProto) -> onnx.ModelProto:
    names = [n.name for n in model.graph.node if n.name]
    if len(names) == len(set(names)):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for i, n in enumerate(out.graph.node):
        n.name = f"{n.name}#{i}" if n.name else ""
    return out


# node names as converters and hand-built models leave them: ONNX names are optional and need not be unique
NAMINGS = ("kept", "stripped", "one name", "two alike")


def renamed(model: onnx.ModelProto, naming: str) -> onnx.ModelProto:
    """A copy with ``naming`` (``rename_nodes``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    rename_nodes(out.graph, naming)
    return out


def rename_nodes(graph: onnx.GraphProto, naming: str) -> None:
    """Give the graph's nodes ``naming``: "kept"; "stripped" (every node unnamed); "one name" (every node called
    "n"); "two alike" (the last node takes the first conv's name, or the first node's)."""
    nodes = graph.node
    for n in nodes:
        if naming == "stripped":
            n.name = ""
        elif naming == "one name":
            n.name = "n"
    if naming == "two alike" and len(nodes) > 1:
        first = next((n for n in nodes if n.op_type == "Conv" and n is not nodes[-1]), nodes[0])
        first.name = first.name or "twin"
        nodes[-1].name = first.name


def assert_names_kept(original: onnx.ModelProto, result: onnx.ModelProto) -> None:
    """Nodes the fold left as they were keep their names byte for byte (matched by their first output, never by
    name); no name, the empty one included, is on more nodes than in the original, and every new one is on one."""
    from collections import Counter

    before = {n.output[0]: n for n in original.graph.node if n.output}
    for n in result.graph.node:
        o = before.get(n.output[0])
        if o is None:
            continue
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(o)
        b.CopyFrom(n)
        a.name = b.name = ""
        if a == b:
            assert n.name == o.name, (o.name, n.name)
    old, new = Counter(n.name for n in original.graph.node), Counter(n.name for n in result.graph.node)
    assert all(c <= (old[name] or 1) for name, c in new.items()), [(k, c) for k, c in new.items() if c > (old[k] or 1)]


def assert_same(original: onnx.ModelProto, folded: onnx.ModelProto, feed_o: dict, feed_f: dict,
                rtol: float = 1e-4) -> float:
    """Independent of edgefold's own check: every output equal to float32 rounding, everywhere."""
    worst = 0.0
    for r, g in zip(run(original, feed_o), run(folded, feed_f)):
        assert r.shape == g.shape
        err = float(np.abs(r.astype(np.float64) - g).max())
        scale = float(np.abs(r).max()) or 1.0
        assert err <= 1e-5 + rtol * scale, f"max abs error {err} on outputs up to {scale}"
        worst = max(worst, err / scale)
    return worst


def gray_frame(h: int, w: int, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 1, h, w)).astype(dtype)


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def conv_weight(model: onnx.ModelProto, conv: str) -> np.ndarray:
    """The weight of the conv named ``conv`` (a test's own unique name) or producing ``conv`` (as the metadata
    records folded convs)."""
    node = next(n for n in model.graph.node if conv in (n.name, n.output[0]))
    inits = {t.name: t for t in model.graph.initializer}
    return onnx.numpy_helper.to_array(inits[node.input[1]])


RAPIDOCR = "rapidocr_onnxruntime-1.4.4-*.whl"  # PaddleOCR's PP-OCRv4 networks (paddle2onnx)
NUDENET = "nudenet-3.4.2-*.whl"  # an Ultralytics YOLOv8n (8.2.46 export)


def wheel_model(pattern: str, member: str) -> onnx.ModelProto:
    """A real network inside a wheel ``./run test`` downloads into .cache/wheels; the test skips without it."""
    import zipfile
    from pathlib import Path

    import pytest

    wheels = sorted((Path(__file__).resolve().parents[1] / ".cache" / "wheels").glob(pattern))
    if not wheels:
        pytest.skip(f"{pattern} not downloaded; `./run test` fetches it")
    with zipfile.ZipFile(wheels[0]) as z:
        return onnx.load_from_string(z.read(member))
