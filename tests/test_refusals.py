"""One negative test per refusal reason: a model edgefold cannot fold exactly is refused, naming the node."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.errors import UnsupportedGraph, UsageError
from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import MEAN4, STD4, F, head, normalise


def _gray(b, h=24, w=24, dtype=np.uint8):
    x = b.input("image", [1, 1, h, w], dtype)
    if dtype != np.float32:
        x = b.op("Cast", [x], to=F, name="to_float")
    return x, b.op("Concat", [x, x, x], axis=1, name="rep")


def _finish(b, n, name="stem"):
    return b.model([head(b, b.conv(n, 3, 8, k=3, name=name))])


def test_nonlinearity_before_the_conv():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Relu", [normalise(b, x)], name="early_relu")
    with pytest.raises(UnsupportedGraph, match="'early_relu' \\(Relu\\)"):
        fold(_finish(b, n))


def test_add_with_another_tensor():
    b = ModelBuilder()
    _, x = _gray(b)
    other = b.input("bias_image", [1, 3, 24, 24], np.float32)
    n = b.op("Add", [normalise(b, x), other], name="mix")
    with pytest.raises(UnsupportedGraph, match="'mix' \\(Add\\).*not a constant"):
        fold(_finish(b, n))


def test_normalised_tensor_is_a_graph_output():
    b = ModelBuilder()
    _, x = _gray(b)
    n = normalise(b, x)
    y = b.conv(n, 3, 8, k=3, name="stem")
    m = b.model([y, n])
    with pytest.raises(UnsupportedGraph, match="graph output"):
        fold(m)


def test_division_by_the_image():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Div", [b.const(np.float32(1.0)), x], name="reciprocal")
    with pytest.raises(UnsupportedGraph, match="'reciprocal'.*not affine"):
        fold(_finish(b, n))


def test_per_pixel_mean_image():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Sub", [x, b.const(np.ones((1, 3, 24, 24), np.float32))], name="sub_mean_image")
    with pytest.raises(UnsupportedGraph, match="'sub_mean_image'.*varies along axis"):
        fold(_finish(b, n))


def test_maxpool_after_a_sign_flip():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Sub", [b.const(MEAN4), x])  # negative scale: max does not commute
    n = b.op("MaxPool", [n], kernel_shape=[2, 2], strides=[2, 2], name="pool")
    with pytest.raises(UnsupportedGraph, match="'pool' \\(MaxPool\\)"):
        fold(_finish(b, n))


def test_constant_pad_in_the_normalised_domain():
    b = ModelBuilder(opset=18)
    _, x = _gray(b)
    n = b.op("Pad", [normalise(b, x), b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)),
                     b.const(np.float32(-1.0))], name="minus_one_pad")
    with pytest.raises(UnsupportedGraph, match="'minus_one_pad' \\(Pad\\).*non-zero"):
        fold(_finish(b, n))


def test_avgpool_counting_padding():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("AveragePool", [normalise(b, x)], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1,
             name="avg")
    with pytest.raises(UnsupportedGraph, match="'avg'.*count_include_pad"):
        fold(_finish(b, n))


def test_arithmetic_on_uint8():
    b = ModelBuilder()
    x = b.input("image", [1, 1, 24, 24], np.uint8)
    x = b.op("Sub", [x, b.const(np.uint8(3))], name="u8_sub")
    x = b.op("Cast", [x], to=F)
    with pytest.raises(UnsupportedGraph, match="'u8_sub'.*wraps around"):
        fold(_finish(b, b.op("Concat", [x, x, x], axis=1)))


def test_cast_to_integer():
    b = ModelBuilder()
    _, x = _gray(b, dtype=np.float32)
    n = b.op("Cast", [normalise(b, x)], to=onnx.TensorProto.INT32, name="to_int")
    n = b.op("Cast", [n], to=F)
    with pytest.raises(UnsupportedGraph, match="'to_int'.*INT32"):
        fold(_finish(b, n))


def test_weight_that_is_not_constant():
    b = ModelBuilder()
    _, x = _gray(b)
    w = b.input("weights", [8, 3, 3, 3], np.float32)
    y = b.op("Conv", [normalise(b, x), w], name="dyn_conv", pads=[1, 1, 1, 1])
    with pytest.raises(UnsupportedGraph, match="'dyn_conv'.*weight"):
        fold(b.model([y]))


def test_bare_model_without_flags_hints_at_them():
    b = ModelBuilder()
    x = b.input("input", [1, 3, 24, 24], np.float32)
    m = b.model([head(b, b.conv(x, 3, 8, k=3))])
    with pytest.raises(UnsupportedGraph, match="--gray --mean --std --scale"):
        fold(m)


def test_flags_on_a_model_that_already_normalises():
    b = ModelBuilder()
    _, x = _gray(b, dtype=np.float32)
    with pytest.raises(UsageError, match="already normalised"):
        fold(_finish(b, normalise(b, x)), FoldOptions(mean=(0.5,), std=(0.5,)))


def test_flags_on_a_uint8_input():
    b = ModelBuilder()
    _, x = _gray(b)
    with pytest.raises(UsageError, match="is uint8"):
        fold(_finish(b, normalise(b, x)), FoldOptions(mean=(0.5,), std=(0.5,)))


def test_rgb_flag_on_a_gray_input():
    b = ModelBuilder()
    _, x = _gray(b)
    with pytest.raises(UsageError, match="--rgb needs 3"):
        fold(_finish(b, normalise(b, x)), FoldOptions(channels="rgb"))


def test_unknown_channel_count():
    b = ModelBuilder()
    x = b.input("input", [1, "c", 24, 24], np.float32)
    y = b.conv(x, 3, 8, k=3)
    with pytest.raises(UsageError, match="channel count"):
        fold(b.model([y]), FoldOptions(channels="gray", mean=(0.5,), std=(0.5,)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(std=(0.0,)), "zero"), (dict(mean=(1.0, 2.0)), "1 or 3"), (dict(border="maybe"), "exact or approx"),
    (dict(input_dtype="int4"), "uint8 or float32"), (dict(scale=0.0), "not be 0"),
])
def test_contradictory_or_bad_options(kwargs, match):
    with pytest.raises(UsageError, match=match):
        FoldOptions(**kwargs)


def test_input_name_collision():
    b = ModelBuilder()
    _, x = _gray(b)
    m = _finish(b, normalise(b, x))
    with pytest.raises(UsageError, match="already a tensor"):
        fold(m, FoldOptions(input_name="rep_out"))


def test_mean_std_broadcast_over_space_is_not_confused_with_channels():
    """A (1,1,H,1) constant varies over rows: refused, never folded as if it were per channel."""
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Mul", [x, b.const(np.linspace(0.5, 1.5, 24, dtype=np.float32).reshape(1, 1, 24, 1))], name="vignette")
    with pytest.raises(UnsupportedGraph, match="'vignette'"):
        fold(_finish(b, n))


def test_std_dev_is_mean_image_free():
    b = ModelBuilder()
    _, x = _gray(b)
    n = b.op("Div", [x, b.const(STD4)])
    folded, _ = fold(_finish(b, n))  # positive control: per-channel constants fold
    assert folded is not None


def test_input_size_that_contradicts_a_fixed_size():
    b = ModelBuilder()
    _, x = _gray(b)  # 24 x 24 fixed
    with pytest.raises(UsageError, match="fixed size 24"):
        fold(_finish(b, normalise(b, x)), FoldOptions(input_size=(32, 24)))


def test_zero_pad_followed_by_something_other_than_a_conv():
    b = ModelBuilder(opset=18)
    _, x = _gray(b)
    n = b.op("Pad", [normalise(b, x), b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], name="zpad")
    n = b.op("AveragePool", [n], kernel_shape=[2, 2], strides=[2, 2], name="pool_after_pad")
    with pytest.raises(UnsupportedGraph, match="'pool_after_pad'.*zero-padded"):
        fold(_finish(b, n))


def test_float16_model_is_refused_with_the_way_forward():
    from onnx import helper

    b = ModelBuilder()
    x = b.input("image", [1, 1, 24, 24], np.float16)
    n = b.op("Div", [b.op("Concat", [x, x, x], axis=1), b.const(np.float16(255.0))], name="div16")
    w = (np.random.default_rng(0).standard_normal((8, 3, 3, 3)) * 0.1).astype(np.float16)
    y = b.op("Conv", [n, b.const(w)], pads=[1, 1, 1, 1])
    out = helper.make_tensor_value_info(y, onnx.TensorProto.FLOAT16, None)  # the builder's outputs are float32
    m = helper.make_model(helper.make_graph(b.nodes, "g", b.inputs, [out], initializer=b.inits),
                          opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedGraph, match="'div16'.*float32 model"):
        fold(m)


def test_batchnorm_on_a_channel_last_tensor_names_the_axis():
    """The refusal message used to print '{lin.axis}' literally (a missing f-prefix)."""
    from edgefold.core.affine import ChannelAffine
    from edgefold.folding.ops import NodeCtx, Refusal, batch_norm
    from edgefold.folding.plan import Lin

    b = ModelBuilder()
    x = b.input("image", [1, 3, 8, 8])
    consts = [b.const(np.ones(3, np.float32)) for _ in range(4)]
    y = b.op("BatchNormalization", [x, *consts], name="bn")
    model = b.model([y])
    from edgefold.graph.index import GraphIndex

    index = GraphIndex(model)
    node = index.nodes[0]
    lin = Lin("<raw input>", ChannelAffine.identity(3), 3, 4, True)
    ctx = NodeCtx(index, node, 0, {"image": lin}, frozenset(), "exact")
    with pytest.raises(Refusal, match="channels are on axis 3"):
        batch_norm(ctx)
