"""Every preprocessing pattern real exporters write: op counts before/after and exact equivalence in ORT."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import (
    MEAN4,
    REPLICATIONS,
    STD4,
    F,
    assert_same,
    conv_weight,
    gray_frame,
    gray_model,
    head,
    normalise,
    ops,
)


def frames(h, w):
    return [gray_frame(h, w, seed=1), np.zeros((1, 1, h, w), np.uint8), np.full((1, 1, h, w), 255, np.uint8)]


@pytest.mark.parametrize("rep", sorted(REPLICATIONS))
def test_gray_replication_patterns_fold_to_single_channel(rep):
    m = gray_model(rep)
    folded, report = fold(m)
    assert conv_weight(folded, "stem").shape == (16, 1, 7, 7)
    names = [n.name for n in m.graph.node]
    chain = set(names[: names.index("stem")])
    after = {n.name for n in folded.graph.node}
    assert not chain & after  # every preprocessing node is gone ...
    added = after - set(names)
    assert all(a.startswith(("stem/", "edgefold/")) for a in added), added  # ... and only border pieces are new
    assert report.verification.passed
    for x in frames(40, 52):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_implicit_broadcast_without_replicate_node():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 33, 45], np.float32)
    y = b.conv(normalise(b, x), 3, 8, k=3, stride=1, name="stem")
    m = b.model([head(b, y)])
    folded, _ = fold(m)
    assert conv_weight(folded, "stem").shape == (8, 1, 3, 3)
    x = gray_frame(33, 45, dtype=np.float32)
    assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("variant", ["mul_recip", "sub_then_div", "add_neg", "rsub", "scalar_std"])
def test_scaling_and_shifting_in_any_order(variant):
    b = ModelBuilder()
    x = b.input("image", [1, 1, 24, 30], np.uint8)
    x = b.op("Cast", [x], to=F)
    x = b.op("Concat", [x, x, x], axis=1)
    if variant == "mul_recip":
        x = b.op("Mul", [x, b.const(np.float32(1 / 255))])
        x = b.op("Mul", [b.op("Sub", [x, b.const(MEAN4)]), b.const((1 / STD4).astype(np.float32))])
    elif variant == "sub_then_div":
        x = b.op("Div", [b.op("Sub", [x, b.const(MEAN4 * 255)]), b.const(STD4 * 255)])
    elif variant == "add_neg":
        x = b.op("Div", [b.op("Add", [b.const(-MEAN4 * 255), x]), b.const(STD4 * 255)])
    elif variant == "rsub":  # (mean - x) * -1 / std
        x = b.op("Mul", [b.op("Sub", [b.const(MEAN4 * 255), x]), b.const(np.float32(-1.0))])
        x = b.op("Div", [x, b.const(STD4 * 255)])
    else:
        x = b.op("Div", [b.op("Sub", [b.op("Div", [x, b.const(np.float32(127.5))]), b.const(np.float32(1.0))]),
                         b.const(np.float32(0.5))])
    y = b.conv(x, 3, 8, k=5, stride=2, name="stem")
    m = b.model([head(b, y)])
    folded, _ = fold(m)
    assert conv_weight(folded, "stem").shape == (8, 1, 5, 5)
    assert ops(folded).count("Mul") <= 2  # only the border MatMul/Add pieces remain, no preprocessing Mul
    for x in frames(24, 30):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_batchnorm_used_as_normaliser():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 28, 28], np.uint8)
    x = b.op("Concat", [b.op("Cast", [x], to=F)] * 3, axis=1)
    scale = (1 / (255 * STD4.reshape(3))).astype(np.float32)
    x = b.op("BatchNormalization", [x, b.const(scale), b.const(np.zeros(3, np.float32)),
                                    b.const((MEAN4.reshape(3) / scale).astype(np.float32)),
                                    b.const(np.full(3, 1 - 1e-5, np.float32))], epsilon=1e-5)
    y = b.conv(x, 3, 8, k=3, name="stem")
    m = b.model([head(b, y)])
    folded, _ = fold(m)
    assert "BatchNormalization" not in ops(folded)
    for x in frames(28, 28):
        assert_same(m, folded, {"image": x}, {"image": x})


def _bgr_model(flip: str, opset: int = 17):
    b = ModelBuilder(opset=opset)
    x = b.input("image", [1, 3, 26, 34], np.uint8)
    x = b.op("Cast", [x], to=F)
    if flip == "gather":
        x = b.op("Gather", [x, b.const(np.array([2, 1, 0], np.int64))], axis=1)
    elif flip == "slice":
        x = b.op("Slice", [x, b.const(np.array([-1], np.int64)), b.const(np.array([-(2**62)], np.int64)),
                           b.const(np.array([1], np.int64)), b.const(np.array([-1], np.int64))])
    else:
        parts = b.op_n("Split", [x, b.const(np.array([1, 1, 1], np.int64))], 3, axis=1)
        x = b.op("Concat", [parts[2], parts[1], parts[0]], axis=1)
    y = b.conv(normalise(b, x), 3, 8, k=3, stride=2, name="stem")
    return b.model([head(b, y)])


@pytest.mark.parametrize("flip", ["gather", "slice", "split_concat"])
def test_channel_flips(flip):
    m = _bgr_model(flip)
    folded, report = fold(m)
    assert conv_weight(folded, "stem").shape == (8, 3, 3, 3)
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 26, 34)).astype(np.uint8)
    assert_same(m, folded, {"image": x}, {"image": x})
    # --gray on the same colour model: the camera's gray frame replicated is what the original saw
    folded_g, report_g = fold(m, FoldOptions(channels="gray"))
    assert conv_weight(folded_g, "stem").shape == (8, 1, 3, 3)
    assert report_g.plan.chains[0].contract.channels == 1
    g = gray_frame(26, 34)
    assert_same(m, folded_g, {"image": np.repeat(g, 3, axis=1)}, {"image": g})


def test_nhwc_input_keeps_its_layout():
    b = ModelBuilder()
    x = b.input("image", [1, 30, 40, 3], np.uint8)
    x = b.op("Cast", [x], to=F)
    x = b.op("Div", [x, b.const(np.float32(255))])
    x = b.op("Sub", [x, b.const(MEAN4.reshape(3))])
    x = b.op("Div", [x, b.const(STD4.reshape(3))])
    x = b.op("Transpose", [x], perm=[0, 3, 1, 2])
    y = b.conv(x, 3, 8, k=3, stride=2, name="stem")
    m = b.model([head(b, y)])
    folded, report = fold(m, FoldOptions(channels="gray"))
    c = report.plan.chains[0].contract
    assert (c.layout, c.channels, c.shape) == ("NHWC", 1, (1, 30, 40, 1))
    assert conv_weight(folded, "stem").shape == (8, 1, 3, 3)
    g = np.random.default_rng(2).integers(0, 256, (1, 30, 40, 1)).astype(np.uint8)
    assert_same(m, folded, {"image": np.repeat(g, 3, axis=3)}, {"image": g})


def test_paddle_style_constant_nodes_for_all_weights():
    m = gray_model("concat", as_node=True)
    assert "Constant" in ops(m)
    folded, _ = fold(m)
    assert conv_weight(folded, "stem").shape == (16, 1, 7, 7)
    assert ops(folded).count("Constant") < ops(m).count("Constant")  # the normaliser constants are gone
    x = gray_frame(40, 52)
    assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("opset", [11, 13, 18, 21, 23])
def test_opsets(opset):
    m = gray_model("tile", opset=opset)
    folded, _ = fold(m)
    assert folded.opset_import[0].version == opset
    x = gray_frame(40, 52)
    assert_same(m, folded, {"image": x}, {"image": x})


def test_several_convs_read_the_normalised_tensor():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 32, 32], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))
    y1 = b.conv(n, 3, 8, k=3, name="branch_a")
    y2 = b.conv(n, 3, 8, k=5, stride=2, pad=[2, 1, 1, 2], name="branch_b")
    y2 = b.op("Resize", [y2, "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    m = b.model([b.op("Add", [y1, y2])])
    folded, report = fold(m)
    assert len(report.plan.chains[0].convs) == 2
    assert conv_weight(folded, "branch_a").shape[1] == conv_weight(folded, "branch_b").shape[1] == 1
    x = gray_frame(32, 32)
    assert_same(m, folded, {"image": x}, {"image": x})


def rep_concat_cast(b, x):
    x = b.op("Cast", [x], to=F)
    return b.op("Concat", [x, x, x], axis=1)


def test_octconv_first_layer_folds_through_avgpool():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 48, 64], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))
    high = b.conv(n, 3, 12, k=3, name="oct_high")
    low = b.conv(b.op("AveragePool", [n], kernel_shape=[2, 2], strides=[2, 2]), 3, 4, k=3, name="oct_low")
    up = b.op("Resize", [b.op("Relu", [low]), "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    m = b.model([b.op("Concat", [b.op("Relu", [high]), up], axis=1)])
    folded, report = fold(m)
    assert {c.node_name for c in report.plan.chains[0].convs} == {"oct_high", "oct_low"}
    assert conv_weight(folded, "oct_low").shape == (4, 1, 3, 3)
    for x in frames(48, 64):
        assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("op", ["resize_sizes", "resize_linear", "crop", "maxpool", "avgpool_excl_pad", "reflect_pad"])
def test_commuting_spatial_ops(op):
    b = ModelBuilder(opset=18)
    x = b.input("image", [1, 1, 36, 44], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))
    if op == "resize_sizes":
        n = b.op("Resize", [n, "", "", b.const(np.array([1, 3, 27, 33], np.int64))], mode="nearest")
    elif op == "resize_linear":
        n = b.op("Resize", [n, "", b.const(np.array([1, 1, 0.75, 0.5], np.float32))], mode="linear")
    elif op == "crop":
        n = b.op("Slice", [n, b.const(np.array([3, 5], np.int64)), b.const(np.array([-3, 40], np.int64)),
                           b.const(np.array([2, 3], np.int64))])
    elif op == "maxpool":
        n = b.op("MaxPool", [n], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    elif op == "avgpool_excl_pad":
        n = b.op("AveragePool", [n], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)
    else:
        n = b.op("Pad", [n, b.const(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64))], mode="reflect")
    y = b.conv(n, 3, 8, k=3, stride=2, name="stem")
    m = b.model([head(b, y)])
    folded, _ = fold(m)
    assert conv_weight(folded, "stem").shape == (8, 1, 3, 3)
    for x in frames(36, 44):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_focus_space_to_depth_reads_four_channels_not_twelve():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 64, 64], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))

    def sl(y0, x0):
        return b.op("Slice", [n, b.const(np.array([y0, x0], np.int64)), b.const(np.array([2**62, 2**62], np.int64)),
                              b.const(np.array([2, 3], np.int64)), b.const(np.array([2, 2], np.int64))])
    focus = b.op("Concat", [sl(0, 0), sl(1, 0), sl(0, 1), sl(1, 1)], axis=1)
    y = b.conv(focus, 12, 16, k=3, name="focus_conv")
    m = b.model([head(b, y, 16)])
    folded, _ = fold(m)
    assert conv_weight(folded, "focus_conv").shape == (16, 4, 3, 3)
    for x in frames(64, 64):
        assert_same(m, folded, {"image": x}, {"image": x})


CONV_CONFIGS = [
    dict(k=3, stride=1, group=3, cout=6),  # grouped
    dict(k=3, stride=2, group=3, cout=3),  # depthwise
    dict(k=7, stride=2, pad=[3, 2, 1, 3]),  # asymmetric
    dict(k=3, stride=1, auto_pad="SAME_UPPER"),
    dict(k=4, stride=2, auto_pad="SAME_LOWER"),
    dict(k=3, stride=3, auto_pad="VALID"),
    dict(k=3, stride=1, dilation=3, pad=3),
    dict(k=5, stride=4, pad=2, bias=False),
    dict(k=1, stride=2, pad=1),
    dict(k=(1, 7), stride=1, pad=[0, 3, 0, 3]),
]


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dynamic", [False, True])
def test_conv_configurations(cfg, dynamic):
    m = gray_model("concat", h="h" if dynamic else 37, w="w" if dynamic else 29, **cfg)
    folded, report = fold(m)
    w = conv_weight(folded, "stem")
    assert w.shape[1] == 1 and report.plan.chains[0].convs[0].group == 1
    for h, wd in ((37, 29), (16, 23)) if dynamic else ((37, 29),):
        for x in frames(h, wd):
            assert_same(m, folded, {"image": x}, {"image": x})


def test_learned_1x1_adapter_composes_into_the_stem():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 32, 32], np.float32)
    a = b.conv(x, 1, 3, k=1, pad=0, name="adapter")
    y = b.conv(a, 3, 8, k=3, name="stem")
    m = b.model([head(b, y)])
    folded, report = fold(m)
    assert "adapter" not in {n.name for n in folded.graph.node}
    assert conv_weight(folded, "stem").shape == (8, 1, 3, 3)
    x = gray_frame(32, 32, dtype=np.float32)
    assert_same(m, folded, {"image": x}, {"image": x})


def test_1x1_stem_followed_by_nonlinearity_is_the_fold_target():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 20, 20], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))
    y = b.conv(n, 3, 8, k=1, pad=0, name="stem")
    m = b.model([head(b, y)])
    folded, _ = fold(m)
    assert conv_weight(folded, "stem").shape == (8, 1, 1, 1)
    x = gray_frame(20, 20)
    assert_same(m, folded, {"image": x}, {"image": x})


def _bare_model(h=32, w=40):
    b = ModelBuilder()
    x = b.input("input", [1, 3, h, w], np.float32)
    y = b.conv(x, 3, 8, k=7, stride=2, name="stem")
    return b.model([head(b, y)])


@pytest.mark.parametrize("order", ["gray", "rgb", "bgr"])
@pytest.mark.parametrize("dtype", [None, "uint8"])
def test_bare_model_with_declared_normalisation(order, dtype):
    m = _bare_model()
    opts = FoldOptions(channels=order, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=255,
                       input_dtype=dtype)
    folded, report = fold(m, opts)
    c = report.plan.chains[0].contract
    assert c.channels == (1 if order == "gray" else 3) and c.dtype == (dtype or "float32")
    raw = np.random.default_rng(3).integers(0, 256, (1, c.channels, 32, 40)).astype(np.float32)
    rgb = np.repeat(raw, 3, axis=1) if order == "gray" else (raw[:, ::-1] if order == "bgr" else raw)
    reference_in = ((rgb / 255 - MEAN4) / STD4).astype(np.float32)
    assert_same(m, folded, {"input": reference_in}, {"input": raw.astype(dtype or np.float32)})


def test_untouched_parts_of_the_model_are_kept_byte_for_byte():
    m = gray_model("concat")
    folded, _ = fold(m)
    tail_before = [n.SerializeToString() for n in m.graph.node if n.name != "stem"][-2:]
    tail_after = [n.SerializeToString() for n in folded.graph.node][-2:]
    assert tail_before == tail_after
    assert m.graph.output == folded.graph.output


def test_unused_constants_are_removed_and_model_checks():
    m = gray_model("legacy_expand")
    folded, _ = fold(m)
    onnx.checker.check_model(folded)
    used = {i for n in folded.graph.node for i in n.input}
    assert all(t.name in used for t in folded.graph.initializer)


def test_input_size_specialises_a_dynamic_model_for_the_fast_scheme():
    m = gray_model("concat", h="h", w="w")
    folded, report = fold(m, FoldOptions(input_size=(45, 61)))
    assert report.plan.chains[0].contract.shape == (1, 1, 45, 61)
    assert report.convs[0][0].border_scheme == "static-tinyconv"
    for x in frames(45, 61):
        assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("dynamic", [False, True])
def test_recentred_raw_input_for_int8(dynamic):
    """raw_offset=-128: the convs read x - 128 (an explicit Add), still exactly the original."""
    m = gray_model("concat", h="h" if dynamic else 40, w="w" if dynamic else 52)
    folded, report = fold(m, FoldOptions(raw_offset=-128.0))
    add = next(n for n in folded.graph.node if n.name == "edgefold/image/recentre")
    stem = next(n for n in folded.graph.node if n.name == "stem")
    assert stem.input[0] == add.output[0] == "image/raw_centred"
    for x in frames(40, 52):
        assert_same(m, folded, {"image": x}, {"image": x})


def test_scale_alone_composes_with_in_graph_normalisation():
    """torchvision style: the graph normalises 0..1 inputs; the camera gives 0..255 - --scale 255 folds the /255."""
    b = ModelBuilder()
    x = b.input("image", [1, 3, 32, 40], np.float32)
    x = b.op("Div", [b.op("Sub", [x, b.const(MEAN4)]), b.const(STD4)])
    m = b.model([head(b, b.conv(x, 3, 8, k=3, name="stem"))])
    folded, report = fold(m, FoldOptions(channels="gray", scale=255.0, input_dtype="uint8"))
    c = report.plan.chains[0].contract
    assert (c.channels, c.dtype, c.pixel_range) == (1, "uint8", (0.0, 255.0))
    g = gray_frame(32, 40)
    assert_same(m, folded, {"image": np.repeat(g, 3, axis=1).astype(np.float32) / 255}, {"image": g})


def test_two_camera_inputs_are_folded_independently():
    """A stereo pair: each input has its own preprocessing and stem; a third, non-image input is untouched."""
    b = ModelBuilder()
    left = b.input("left", [1, 1, 32, 40], np.uint8)
    right = b.input("right", [1, 1, 32, 40], np.uint8)
    gain = b.input("gain", [1, 8, 1, 1], np.float32)
    yl = b.conv(normalise(b, rep_concat_cast(b, left)), 3, 8, k=3, name="stem_left")
    yr = b.conv(normalise(b, rep_concat_cast(b, right)), 3, 8, k=5, stride=2, pad=2, name="stem_right")
    yr = b.op("Resize", [yr, "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    m = b.model([b.op("Mul", [b.op("Add", [yl, yr]), gain])])
    folded, report = fold(m)
    assert {c.input_name for c in report.plan.chains} == {"left", "right"}
    assert [s[0] for s in report.plan.skipped] == ["gain"]
    assert conv_weight(folded, "stem_left").shape[1] == conv_weight(folded, "stem_right").shape[1] == 1
    xl, xr = gray_frame(32, 40, seed=1), gray_frame(32, 40, seed=2)
    g = np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1)
    assert_same(m, folded, {"left": xl, "right": xr, "gain": g}, {"left": xl, "right": xr, "gain": g})


@pytest.mark.parametrize("insert, dynamic", [("unsqueeze", False), ("unsqueeze", True), ("reshape", False)])
def test_nhw_gray_input_that_the_graph_gives_a_channel_axis(insert, dynamic):
    """Camera frames are H x W: models often take N x H x W and unsqueeze the channel axis themselves."""
    b = ModelBuilder(opset=17)
    h, w = ("h", "w") if dynamic else (36, 44)
    x = b.input("image", [1, h, w], np.uint8)
    x = b.op("Cast", [x], to=F)
    if insert == "unsqueeze":
        x = b.op("Unsqueeze", [x, b.const(np.array([1], np.int64))])
    else:
        x = b.op("Reshape", [x, b.const(np.array([0, 1, -1, 44], np.int64))])
    y = b.conv(normalise(b, rep_concat_cast_float(b, x)), 3, 8, k=5, stride=2, name="stem")
    m = b.model([head(b, y)])
    folded, report = fold(m)
    c = report.plan.chains[0].contract
    assert (c.layout, c.channels, c.dtype) == ("NHW", 1, "uint8")
    assert conv_weight(folded, "stem").shape == (8, 1, 5, 5)
    for size in ((36, 44),) if not dynamic else ((36, 44), (21, 30)):
        x = np.random.default_rng(0).integers(0, 256, (1, *size)).astype(np.uint8)
        assert_same(m, folded, {"image": x}, {"image": x})


def rep_concat_cast_float(b, x):
    return b.op("Concat", [x, x, x], axis=1)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("conv_pads", [0, 1])
def test_keras_zero_padding_then_valid_conv(dynamic, conv_pads):
    """Keras ResNet50: ZeroPadding2D(3) + Conv(7x7, s2, valid) - the Pad merges into the conv's padding."""
    b = ModelBuilder(opset=13)
    x = b.input("image", [1, 1, "h" if dynamic else 45, "w" if dynamic else 52], np.uint8)
    n = normalise(b, rep_concat_cast(b, x))
    n = b.op("Pad", [n, b.const(np.array([0, 0, 3, 2, 0, 0, 3, 4], np.int64))], mode="constant", name="zero_padding2d")
    y = b.conv(n, 3, 16, k=7, stride=2, pad=conv_pads, name="conv1")
    m = b.model([head(b, y, 16)])
    folded, report = fold(m)
    assert "zero_padding2d" not in {nd.name for nd in folded.graph.node}
    stem = next(nd for nd in folded.graph.node if nd.name == "conv1")
    pads = next(list(at.ints) for at in stem.attribute if at.name == "pads")
    assert pads == [3 + conv_pads, 2 + conv_pads, 3 + conv_pads, 4 + conv_pads]
    assert conv_weight(folded, "conv1").shape == (16, 1, 7, 7)
    for size in ((45, 52), (30, 41)) if dynamic else ((45, 52),):
        for x in frames(*size):
            assert_same(m, folded, {"image": x}, {"image": x})


def test_recognisers_are_chosen_by_op_and_opset():
    """Operands that moved from attributes to inputs have one recogniser per form, picked by the model's opset."""
    from edgefold.folding import ops
    from edgefold.folding.ops import channels, lanes, spatial

    assert ops.recogniser("Slice", 9) is channels.slice_v1 and ops.recogniser("Slice", 10) is channels.slice_v10
    assert ops.recogniser("Unsqueeze", 12) is lanes.unsqueeze_v1 and ops.recogniser("Unsqueeze", 13) is lanes.unsqueeze_v13
    assert ops.recogniser("Pad", 10) is spatial.pad_v2 and ops.recogniser("Pad", 17) is spatial.pad_v11
    assert ops.recogniser("Pad", 18) is spatial.pad_v18 and ops.recogniser("Resize", 10) is spatial.resize_v10
    assert ops.recogniser("Resize", 19) is spatial.resize_v11 and ops.recogniser("NoSuchOp", 17) is None
