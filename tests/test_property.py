"""Property: random preprocessing chains x random conv configurations x input sizes fold exactly.

Random chains are drawn from every pattern the matcher knows, in random orders; conv configurations
cover kernel 1-7, stride 1-4, dilation 1-3, groups (incl. depthwise), symmetric/asymmetric/auto pads,
bias on/off; inputs are static or dynamic, odd and tiny. The folded model must equal the original in
onnxruntime with optimisations off, and the first conv must read one channel for gray input.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgefold.errors import UnsupportedGraph
from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import NAMINGS, F, assert_names_kept, assert_same, conv_weight, renamed


@st.composite
def conv_configs(draw):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 3))
    group_kind = draw(st.sampled_from(["plain", "grouped", "depthwise"]))
    group, cout = {"plain": (1, draw(st.integers(1, 6))), "grouped": (3, 3 * draw(st.integers(1, 2))),
                   "depthwise": (3, 3)}[group_kind]
    pad_kind = draw(st.sampled_from(["sym", "asym", "SAME_UPPER", "SAME_LOWER", "VALID", "zero"]))
    ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    if pad_kind == "sym":
        ph, pw = draw(st.integers(0, ekh - 1)) if ekh > 1 else 0, draw(st.integers(0, ekw - 1)) if ekw > 1 else 0
        pads, auto = [ph, pw, ph, pw], None
    elif pad_kind == "asym":
        pads = [draw(st.integers(0, max(0, e - 1))) for e in (ekh, ekw, ekh, ekw)]
        auto = None
    elif pad_kind == "zero":
        pads, auto = [0, 0, 0, 0], None
    else:
        pads, auto = None, pad_kind
        dilation = 1  # onnxruntime does not run SAME padding with dilation
    return dict(k=(kh, kw), stride=stride, dilation=dilation, group=group, cout=cout, pad=pads, auto_pad=auto,
                bias=draw(st.booleans()))


STEPS = ["div_scalar", "mul_channel", "sub_channel", "add_scalar", "rsub", "flip_gather", "flip_slice",
         "flip_split", "batchnorm", "avgpool", "resize", "crop", "maxpool", "reflect_pad", "lanes"]
SPATIAL = {"avgpool", "resize", "crop", "maxpool", "reflect_pad"}
# channel by channel (issue 15): each channel selected with a scalar index, its own scalar arithmetic, then
# put back by a stack (in a random channel order), in-place ScatterElements (indices from the update's shape,
# as the dynamo exporter writes them), ScatterND or Where with a per-channel mask
LANE_FORMS = ["stack", "scatter", "scatter_nd", "where"]


def lanes(b, x, rng, after_spatial):  # noqa: ANN001, ANN201
    form = rng.choice(["stack", "scatter_nd", "where"] if after_spatial else LANE_FORMS)
    one = b.const(np.array([1], np.int64))
    parts = []
    for c in range(3):
        lane = b.op("Gather", [x, b.const(np.array(c, np.int64))], axis=1)
        for _ in range(rng.integers(0, 3)):
            op = rng.choice(["Mul", "Add", "Sub", "Div"])
            k = b.const(np.float32(rng.uniform(0.5, 2) * rng.choice([-1, 1])))
            lane = b.op(op, [lane, k] if op == "Div" or rng.random() < 0.5 else [k, lane])
        parts.append(b.op("Unsqueeze", [lane, one]))
    order = rng.permutation(3)
    if form == "stack":
        return b.op("Concat", [parts[i] for i in order], axis=1)
    for c in order:
        if form == "scatter":
            idx = b.op("Expand", [b.const(np.array(c, np.int64)), b.op("Shape", [parts[c]])])
            x = b.op("ScatterElements", [x, idx, parts[c]], axis=1)
        elif form == "scatter_nd":
            x = b.op("ScatterND", [x, b.const(np.array([[[0, c]]], np.int64)), parts[c]])
        else:
            mask = b.const((np.arange(3) == c).reshape(1, 3, 1, 1))
            x = b.op("Where", [mask, parts[c], x])
    return x


@st.composite
def chains(draw):
    replicate = draw(st.sampled_from(["concat", "tile", "expand", "broadcast"]))
    pre = draw(st.lists(st.sampled_from(["div_scalar", "add_scalar", "avgpool", "crop"]), max_size=2))
    steps = draw(st.lists(st.sampled_from(STEPS), min_size=0, max_size=5))
    # pre: steps on the 1-channel tensor before it is replicated (x / 255 first, then x3, in some exports)
    return replicate, pre + ["replicate"] + steps, draw(st.booleans()), draw(st.booleans())


def build(replicate, steps, cfg, h, w, dynamic, seed, const_nodes=False, nhwc=False):
    b = ModelBuilder(seed=seed)
    rng = np.random.default_rng(seed)
    hh, ww = "h" if dynamic else h, "w" if dynamic else w
    x = b.input("image", [1, hh, ww, 1] if nhwc else [1, 1, hh, ww], np.uint8)
    x = b.op("Cast", [x], to=F)
    if nhwc:
        x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
    const = b.const
    b.const = lambda value, stem="c", as_node=const_nodes: const(value, stem, as_node)  # type: ignore[method-assign]
    for i, step in enumerate(steps):
        if step == "lanes":
            x = lanes(b, x, rng, after_spatial=bool(SPATIAL & set(steps[:i])))
            continue
        if step == "replicate":
            if replicate == "concat":
                x = b.op("Concat", [x, x, x], axis=1)
            elif replicate == "tile":
                x = b.op("Tile", [x, b.const(np.array([1, 3, 1, 1], np.int64))])
            elif replicate == "expand":
                x = b.op("Expand", [x, b.const(np.array([1, 3, 1, 1], np.int64))])
            else:  # implicit broadcast against a per-channel constant
                x = b.op("Sub", [x, b.const(rng.uniform(50, 200, (1, 3, 1, 1)).astype(np.float32))])
            continue
        c3 = (1, 3, 1, 1)
        if step == "div_scalar":
            x = b.op("Div", [x, b.const(np.float32(rng.uniform(0.5, 300)))])
        elif step == "mul_channel":
            x = b.op("Mul", [x, b.const(rng.uniform(-2, 2, c3).astype(np.float32))])
        elif step == "sub_channel":
            x = b.op("Sub", [x, b.const(rng.uniform(-1, 1, c3).astype(np.float32))])
        elif step == "add_scalar":
            x = b.op("Add", [b.const(np.float32(rng.uniform(-1, 1))), x])
        elif step == "rsub":
            x = b.op("Sub", [b.const(rng.uniform(-1, 1, c3).astype(np.float32)), x])
        elif step == "flip_gather":
            x = b.op("Gather", [x, b.const(np.array([2, 1, 0], np.int64))], axis=1)
        elif step == "flip_slice":
            x = b.op("Slice", [x, b.const(np.array([2], np.int64)), b.const(np.array([-4], np.int64)),
                               b.const(np.array([1], np.int64)), b.const(np.array([-1], np.int64))])
        elif step == "batchnorm":
            x = b.op("BatchNormalization", [x] + [b.const(v.astype(np.float32)) for v in (
                rng.uniform(0.5, 2, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(0.5, 2, 3))])
        elif step == "avgpool":
            x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[1, 1])
        elif step == "resize":
            x = b.op("Resize", [x, "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
        elif step == "flip_split":
            parts = b.op_n("Split", [x, b.const(np.array([1, 1, 1], np.int64))], 3, axis=1)
            x = b.op("Concat", [parts[2], parts[1], parts[0]], axis=1)
        elif step == "maxpool":
            x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[1, 1], pads=[1, 1, 0, 0])
        elif step == "reflect_pad":
            x = b.op("Pad", [x, b.const(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], mode="reflect")
        elif step == "crop":
            x = b.op("Slice", [x, b.const(np.array([1, 1], np.int64)), b.const(np.array([-1, 2**62], np.int64)),
                               b.const(np.array([2, 3], np.int64))])
    y = b.conv(x, 3, cfg["cout"], k=cfg["k"], stride=cfg["stride"], pad=cfg["pad"], group=cfg["group"],
               dilation=cfg["dilation"], bias=cfg["bias"], auto_pad=cfg["auto_pad"], name="stem")
    return b.model([y])


def spatial_after(steps, h, w):
    for s in (s for s in steps if s != "replicate"):
        if s == "avgpool":
            h, w = h - 1, w - 1
        elif s == "reflect_pad":
            h, w = (h + 3, w + 3) if h >= 3 and w >= 3 else (0, 0)  # reflect needs pad < size
        elif s == "resize":
            h, w = 2 * h, 2 * w
        elif s == "crop":
            h = max(0, h - 2)
            w = max(0, w - 1)
    return h, w


def fits(cfg, h, w):
    (kh, kw), d = cfg["k"], cfg["dilation"]
    pads = cfg["pad"] or [0, 0, 0, 0]
    if cfg["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        return h >= 1 and w >= 1
    return h + pads[0] + pads[2] >= (kh - 1) * d + 1 and w + pads[1] + pads[3] >= (kw - 1) * d + 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=chains(), cfg=conv_configs(), h=st.integers(1, 23), w=st.integers(1, 23), dynamic=st.booleans(),
       seed=st.integers(0, 2**16), naming=st.sampled_from(NAMINGS))
def test_random_chains_fold_exactly(chain, cfg, h, w, dynamic, seed, naming):
    """... whatever the node names (kept, stripped, all one, two alike): untouched ones stay as they were."""
    replicate, steps, const_nodes, nhwc = chain
    hs, ws = spatial_after(steps, h, w)
    assume(hs >= 1 and ws >= 1 and fits(cfg, hs, ws))
    m = renamed(build(replicate, steps, cfg, h, w, dynamic, seed, const_nodes, nhwc), naming)
    try:
        folded, report = fold(m, FoldOptions(verify_sizes=((h, w), (h + 3, w + 2))))
    except UnsupportedGraph as err:
        # the only refusal these chains may earn: a max over channels whose map flips or mixes them
        assert "maxpool" in steps and "MaxPool" in str(err), err
        return
    assert report.verification is not None and report.verification.passed
    stem = json.loads({p.key: p.value for p in folded.metadata_props}["edgefold.folded_convs"])[0]
    assert conv_weight(folded, stem).shape[1] == 1
    assert_names_kept(m, folded)
    onnx.checker.check_model(folded)
    for size in ((h, w), (h + 5, w + 4)) if dynamic else ((h, w),):
        if not fits(cfg, *spatial_after(steps, *size)):
            continue
        for frame in (np.random.default_rng(seed).integers(0, 256, (1, 1, *size)), np.zeros((1, 1, *size)),
                      np.full((1, 1, *size), 255)):
            x = frame.astype(np.uint8)
            if nhwc:
                x = np.moveaxis(x, 1, 3)
            assert_same(m, folded, {"image": x}, {"image": x})
