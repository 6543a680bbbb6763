"""The border term on the ring only (``static-strips``): the conv on the interior with the term in its bias, exact
strips along the edges with their own small terms, joined after the pool or conv that follows the stem. Every
case is checked against the original in onnxruntime, borders included; where the cut does not apply the fold
keeps the tiny conv or the run-time form, also exact."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.core.contract import Meta, meta_json
from edgefold.folding import FoldOptions, border, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import F, assert_same, gray_frame, normalise, rep_concat


@pytest.fixture(autouse=True)
def cut_small_frames(monkeypatch):
    """Small frames keep the tiny conv (faster there); these tests check the cut's geometry on small frames."""
    monkeypatch.setattr(border, "STRIPS_MIN_OUTPUTS", 0)


def frames(h, w):
    return [gray_frame(h, w, seed=3), np.zeros((1, 1, h, w), np.uint8), np.full((1, 1, h, w), 255, np.uint8)]


def stem_model(h=41, w=53, k=7, stride=2, pad=None, dilation=1, group=1, cout=16, tail="maxpool", chain=("Relu",),
               tail_pads=(1, 1, 1, 1), tail_k=3, tail_stride=2, seed=0, extra_reader=False, auto_pad=None
               ) -> onnx.ModelProto:
    """u8 gray -> x3 -> ImageNet normalisation -> stem conv -> ``chain`` -> ``tail`` (or the stem's output)."""
    b = ModelBuilder(seed=seed)
    x = b.op("Cast", [b.input("image", [1, 1, h, w], np.uint8)], to=F)
    y = b.conv(normalise(b, rep_concat(b, x)), 3, cout, k=k, stride=stride, pad=pad, dilation=dilation, group=group,
               auto_pad=auto_pad, name="stem")
    outputs = []
    if extra_reader:
        outputs.append(b.op("Sigmoid", [y]))
    for op in chain:
        if op == "BatchNormalization":
            rng = np.random.default_rng(seed)
            vecs = [rng.uniform(0.5, 1.5, cout), rng.normal(0, 0.1, cout), rng.normal(0, 0.1, cout),
                    rng.uniform(0.5, 1.5, cout)]
            y = b.op(op, [y] + [b.const(v.astype(np.float32), "bn") for v in vecs])
        elif op == "PRelu":
            y = b.op(op, [y, b.const(np.linspace(0.1, 0.3, cout).reshape(cout, 1, 1).astype(np.float32), "slope")])
        elif op == "Clip":
            y = b.op(op, [y, b.const(np.float32(-1), "lo"), b.const(np.float32(2), "hi")])
        else:
            y = b.op(op, [y])
    window = dict(kernel_shape=[tail_k, tail_k], strides=[tail_stride, tail_stride], pads=list(tail_pads))
    if tail == "maxpool":
        y = b.op("MaxPool", [y], **window)
    elif tail == "avgpool":
        y = b.op("AveragePool", [y], count_include_pad=0, **window)
    elif tail == "avgpool_incl":
        y = b.op("AveragePool", [y], count_include_pad=1, **window)
    elif tail == "conv":
        y = b.conv(y, cout, cout, k=tail_k, stride=tail_stride, pad=list(tail_pads))
    return b.model(outputs + [y])


def fold_checked(m, h, w, options=None):
    folded, report = fold(m, options)
    for x in frames(h, w):
        assert_same(m, folded, {"image": x}, {"image": x})
    return folded, report


def scheme(report) -> str:
    return report.convs[0][0].border_scheme


def border_outputs(folded: onnx.ModelProto) -> int:
    """Values the border-term convs write (the tiny convs over ones), from the shapes onnx infers."""
    inferred = onnx.shape_inference.infer_shapes(folded)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in inferred.graph.value_info}
    return sum(int(np.prod(dims[n.output[0]])) for n in folded.graph.node
               if n.op_type == "Conv" and n.output[0].endswith("border_term"))


def test_resnet_stem_corrects_the_ring_not_the_frame(monkeypatch):
    """7x7/s2 conv, ReLU, 3x3/s2 max pool: the border term is computed on strips a few rows wide."""
    monkeypatch.undo()
    m = stem_model(224, 224, cout=64)
    folded, report = fold_checked(m, 224, 224)
    assert scheme(report) == "static-strips"
    assert "edge strips" in report.convs[0][0].border_note and "MaxPool" in report.convs[0][0].border_note
    stem_values = 64 * 112 * 112
    assert border_outputs(folded) < stem_values // 8  # the tiny conv over the whole output wrote all of them
    concats = [n for n in folded.graph.node if n.op_type == "Concat"]
    assert len(concats) == 2 and concats[-1].output[0] == m.graph.output[0].name
    assert "border term" in report.to_text()  # the MACs line counts what the correction costs
    # every conv reading raw pixels is a folded conv (a float-first INT8 build keeps them all in float)
    first = meta_json(folded, Meta.FOLDED_CONVS, [])  # nodes by their outputs (names are optional)
    stem = next(n for n in m.graph.node if n.op_type == "Conv")
    assert first[0] == stem.output[0]
    assert len(first) == 5
    assert {n.output[0] for n in folded.graph.node if n.op_type == "Conv" and n.input[1] == "stem/folded_W"} \
        == set(first)


@pytest.mark.parametrize("h,w", [(37, 53), (41, 29), (64, 64), (23, 100), (33, 34)])
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_odd_sizes_and_strides(h, w, stride):
    _, report = fold_checked(stem_model(h, w, k=5 if stride == 4 else 7, stride=stride), h, w)
    assert scheme(report) == "static-strips"


@pytest.mark.parametrize("pad", [[3, 2, 1, 3], [0, 3, 3, 0], [1, 0, 0, 2], [3, 3, 0, 0]])
def test_asymmetric_conv_pads(pad):
    _, report = fold_checked(stem_model(39, 45, pad=pad), 39, 45)
    assert scheme(report) == "static-strips"


@pytest.mark.parametrize("tail,tail_pads,tail_k,tail_stride", [
    ("maxpool", (1, 1, 1, 1), 3, 2),
    ("maxpool", (0, 1, 2, 0), 3, 1),
    ("maxpool", (0, 0, 0, 0), 2, 2),
    ("avgpool", (1, 1, 1, 1), 3, 2),
    ("avgpool_incl", (1, 0, 1, 0), 3, 3),
    ("conv", (1, 1, 1, 1), 3, 1),
    ("conv", (2, 0, 1, 1), 4, 2),
    ("conv", (1, 1, 1, 1), 3, 2),
])
def test_what_follows_the_stem(tail, tail_pads, tail_k, tail_stride):
    _, report = fold_checked(stem_model(43, 38, tail=tail, tail_pads=tail_pads, tail_k=tail_k,
                                        tail_stride=tail_stride), 43, 38)
    # joined after a stride-1 tail, the Concats would copy as much as the tiny conv costs: it stays
    assert scheme(report) == ("static-strips" if tail_stride > 1 else "static-tinyconv")


@pytest.mark.parametrize("chain", [(), ("BatchNormalization", "Relu"), ("PRelu",), ("Clip", "Sigmoid"),
                                   ("Relu", "Identity")])
def test_pointwise_ops_between_the_stem_and_the_pool(chain):
    _, report = fold_checked(stem_model(40, 44, chain=chain), 40, 44)
    assert scheme(report) == "static-strips"


def test_dilated_and_depthwise_stems():
    _, report = fold_checked(stem_model(45, 47, k=3, stride=1, pad=3, dilation=3), 45, 47)
    assert scheme(report) == "static-strips"
    # a per-channel map keeps a depthwise stem depthwise: the pieces keep its grouping
    b = ModelBuilder(seed=1)
    x = b.op("Cast", [b.input("image", [1, 3, 35, 38], np.uint8)], to=F)
    y = b.conv(normalise(b, x), 3, 3, k=3, stride=2, group=3, pad=1, name="stem")
    y = b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    m = b.model([y])
    folded, report = fold(m)
    assert scheme(report) == "static-strips" and report.plan.chains[0].convs[0].group == 3
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 35, 38)).astype(np.uint8)
    assert_same(m, folded, {"image": x}, {"image": x})


def test_graph_output_right_after_the_stem_keeps_the_tiny_conv():
    _, report = fold_checked(stem_model(37, 41, tail=None, chain=()), 37, 41)
    assert scheme(report) == "static-tinyconv"
    _, report = fold_checked(stem_model(37, 41, tail=None, chain=("Relu",)), 37, 41)
    assert scheme(report) == "static-tinyconv"


def test_stem_output_read_twice_keeps_the_tiny_conv():
    _, report = fold_checked(stem_model(37, 41, extra_reader=True), 37, 41)
    assert scheme(report) == "static-tinyconv"


def test_dynamic_sizes_stay_exact_at_every_size():
    m = stem_model("h", "w")
    folded, report = fold(m)
    assert scheme(report) == "dynamic-separable"
    for h, w in ((37, 53), (16, 17), (64, 48)):
        for x in frames(h, w):
            assert_same(m, folded, {"image": x}, {"image": x})
    folded, report = fold(m, FoldOptions(input_size=(47, 51)))
    assert scheme(report) == "static-strips"
    for x in frames(47, 51):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_frame_too_small_for_an_interior_keeps_the_tiny_conv():
    _, report = fold_checked(stem_model(9, 9, k=7, stride=2), 9, 9)
    assert scheme(report) == "static-tinyconv"


def test_small_frames_keep_the_tiny_conv(monkeypatch):
    monkeypatch.undo()
    _, report = fold_checked(stem_model(150, 150), 150, 150)  # 75x75 stem outputs
    assert scheme(report) == "static-tinyconv"
    _, report = fold_checked(stem_model(161, 170), 161, 170)
    assert scheme(report) == "static-strips"


def test_camera_front_end_and_int8_recentring_keep_the_tiny_conv():
    m = stem_model(40, 42)
    assert scheme(fold(m, FoldOptions(camera="Mono12"))[1]) == "static-tinyconv"
    folded, report = fold(m, FoldOptions(raw_offset=-128.0))
    assert scheme(report) == "static-tinyconv"


def test_several_stems_each_cut_after_their_own_pool():
    b = ModelBuilder(seed=2)
    x = b.op("Cast", [b.input("image", [1, 1, 45, 50], np.uint8)], to=F)
    n = normalise(b, rep_concat(b, x))
    outs = []
    for k, s in ((7, 2), (3, 1)):
        y = b.conv(n, 3, 8, k=k, stride=s, name=f"stem{k}")
        outs.append(b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    m = b.model(outs)
    folded, report = fold(m)
    assert [c.border_scheme for c in report.convs[0]] == ["static-strips", "static-strips"]
    for x in frames(45, 50):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_unnamed_nodes():
    m = stem_model(38, 40)
    for node in m.graph.node:
        node.name = ""
    _, report = fold_checked(m, 38, 40)
    assert scheme(report) == "static-strips"


def test_random_geometries():
    """Kernels, strides, dilations, asymmetric pads and pool windows drawn at random: every cut is exact, and a
    geometry the cut does not cover keeps the tiny conv, also exact."""
    rng = np.random.default_rng(7)
    seen = set()
    for i in range(24):
        k, stride, dil = int(rng.integers(2, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 3))
        pad = [int(v) for v in rng.integers(0, k, 4)]
        tk, ts = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        tail_pads = tuple(int(v) for v in rng.integers(0, tk, 4)) if tk > 1 else (0, 0, 0, 0)
        h, w = (int(v) for v in rng.integers(12, 48, 2))
        m = stem_model(h, w, k=k, stride=stride, pad=pad, dilation=dil, tail_k=tk, tail_stride=ts,
                       tail_pads=tail_pads, cout=8, seed=i, tail=("maxpool", "avgpool", "conv")[i % 3])
        _, report = fold_checked(m, h, w, FoldOptions(verify=False))
        seen.add(scheme(report))
    assert "static-strips" in seen


def test_strip_axis_cuts_cover_the_tail_outputs_once():
    """Pure geometry: the leading strip, the interior and the trailing strip give the tail's outputs in order."""
    for n in range(5, 40):
        for k, s, pb, pa in ((7, 2, 3, 3), (3, 1, 1, 1), (5, 4, 2, 0), (4, 3, 0, 3)):
            for tail in ((3, 2, 1, 1), (1, 1, 0, 0), (2, 2, 0, 1)):
                axis = border._strip_axis(n, k, s, pb, pa, tail)
                if axis is None:
                    continue
                conv_len = (n + pb + pa - k) // s + 1
                assert axis.length == (conv_len + tail[2] + tail[3] - tail[0]) // tail[1] + 1
                assert axis.before + axis.after < axis.length
                a, b = axis.interior_px
                assert 0 <= a < b <= n and axis.lead_px <= n and 0 <= axis.trail_px <= n


def test_nodes_after_the_joined_tail_are_untouched():
    b = ModelBuilder(seed=4)
    x = b.op("Cast", [b.input("image", [1, 1, 40, 44], np.uint8)], to=F)
    y = b.conv(normalise(b, rep_concat(b, x)), 3, 8, k=7, stride=2, name="stem")
    y = b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.op("Flatten", [b.op("GlobalAveragePool", [b.conv(y, 8, 4, k=3)])])
    m = b.model([y])
    folded, report = fold(m)
    assert scheme(report) == "static-strips"
    assert [n.SerializeToString() for n in m.graph.node][-3:] == [n.SerializeToString() for n in folded.graph.node][-3:]
    onnx.checker.check_model(folded)
    assert len({t.name for t in folded.graph.initializer}) == len(folded.graph.initializer)
    for x in frames(40, 44):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_a_constant_that_varies_along_the_width_keeps_the_tiny_conv():
    """Mul by a 1-D constant broadcasts along the width: per column, so no piece may run it alone."""
    b = ModelBuilder(seed=5)
    x = b.op("Cast", [b.input("image", [1, 1, 40, 44], np.uint8)], to=F)
    y = b.conv(normalise(b, rep_concat(b, x)), 3, 8, k=7, stride=2, name="stem")
    y = b.op("Mul", [y, b.const(np.linspace(0.5, 1.5, 22).astype(np.float32), "per_column")])
    m = b.model([b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])])
    _, report = fold_checked(m, 40, 44)
    assert scheme(report) == "static-tinyconv"


def test_a_batch_of_frames():
    b = ModelBuilder(seed=6)
    x = b.op("Cast", [b.input("image", [3, 1, 38, 41], np.uint8)], to=F)
    y = b.conv(normalise(b, rep_concat(b, x)), 3, 8, k=7, stride=2, name="stem")
    m = b.model([b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])])
    folded, report = fold(m)
    assert scheme(report) == "static-strips"
    x = np.random.default_rng(1).integers(0, 256, (3, 1, 38, 41)).astype(np.uint8)
    x[1] = 0
    x[2] = 255
    assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("auto_pad,k", [("SAME_UPPER", 4), ("SAME_LOWER", 4), ("SAME_UPPER", 7)])
def test_auto_padded_stems(auto_pad, k):
    _, report = fold_checked(stem_model(41, 46, k=k, auto_pad=auto_pad), 41, 46)
    assert scheme(report) == "static-strips"
