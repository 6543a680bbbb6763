"""Keras models as tf2onnx writes them (issue 20 section 3): an NHWC input with dynamic H/W - symbolic
(``unk__``), -1 or empty dims - a Transpose to NCHW in front of the first Conv, TF-style names (``input_1:0``)
or none at all. The layout is decided by that Transpose, never by which axes happen to be fixed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgefold.folding import FoldOptions, fold
from tests.models import assert_same

F = onnx.TensorProto.FLOAT


def _dims(vi: onnx.ValueInfoProto, dims: list) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        elif d is not None:
            dim.dim_value = d  # -1 too: paddle2onnx and hand-built models write it for a dynamic axis


def keras_model(dims: list, names: bool = True, auto_pad: bool = True, seg_head: bool = True) -> onnx.ModelProto:
    """Rescaling(1/127.5, -1) -> Conv2D(8, 3, strides=2, 'same') -> ReLU -> [a head resized back to the input's
    size through Shape(input)] -> Conv2D(4, 3) -> NHWC output."""
    rng = np.random.default_rng(5)
    channels = dims[3]
    label = (lambda s: s) if names else (lambda s: "")
    inits = [numpy_helper.from_array(np.array(1 / 127.5, np.float32), "model/rescaling/Cast/x:0"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "model/rescaling/Cast_1/x:0"),
             numpy_helper.from_array(rng.normal(size=(8, channels, 3, 3)).astype(np.float32), "conv1/kernel:0"),
             numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "conv1/bias:0"),
             numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), "conv2/kernel:0"),
             numpy_helper.from_array(np.array([1, 8], np.int64), "const_fold_opt__10"),
             numpy_helper.from_array(np.array([1], np.int64), "const_starts__11"),
             numpy_helper.from_array(np.array([3], np.int64), "const_ends__12")]
    pad = {"auto_pad": "SAME_UPPER"} if auto_pad else {"pads": [0, 0, 1, 1]}
    nodes = []
    if seg_head:  # tf.image.resize(features, tf.shape(inputs)[1:3]) - the Shape read comes first in the graph
        nodes += [helper.make_node("Shape", ["input_1:0"], ["model/tf.compat.v1.shape/Shape:0"],
                                   name=label("model/tf.compat.v1.shape/Shape")),
                  helper.make_node("Slice", ["model/tf.compat.v1.shape/Shape:0", "const_starts__11", "const_ends__12"],
                                   ["model/strided_slice:0"], name=label("model/strided_slice")),
                  helper.make_node("Concat", ["const_fold_opt__10", "model/strided_slice:0"], ["sizes__13"],
                                   name=label("model/resize/Concat"), axis=0)]
    nodes += [helper.make_node("Mul", ["input_1:0", "model/rescaling/Cast/x:0"], ["model/rescaling/mul:0"],
                               name=label("model/rescaling/mul")),
              helper.make_node("Add", ["model/rescaling/mul:0", "model/rescaling/Cast_1/x:0"],
                               ["model/rescaling/add:0"], name=label("model/rescaling/add")),
              helper.make_node("Transpose", ["model/rescaling/add:0"], ["model/conv1/Conv2D__6:0"],
                               name=label("model/conv1/Conv2D__6"), perm=[0, 3, 1, 2]),
              helper.make_node("Conv", ["model/conv1/Conv2D__6:0", "conv1/kernel:0", "conv1/bias:0"],
                               ["model/conv1/BiasAdd:0"], name=label("model/conv1/Conv2D"), strides=[2, 2],
                               kernel_shape=[3, 3], dilations=[1, 1], **pad),
              helper.make_node("Relu", ["model/conv1/BiasAdd:0"], ["model/conv1/Relu:0"],
                               name=label("model/conv1/Relu"))]
    feat = "model/conv1/Relu:0"
    if seg_head:
        nodes.append(helper.make_node("Resize", [feat, "", "", "sizes__13"], ["model/resize/Resize:0"],
                                      name=label("model/resize/Resize"), mode="linear",
                                      coordinate_transformation_mode="half_pixel"))
        feat = "model/resize/Resize:0"
    nodes += [helper.make_node("Conv", [feat, "conv2/kernel:0"], ["model/conv2/Conv2D:0"],
                               name=label("model/conv2/Conv2D"), kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
              helper.make_node("Transpose", ["model/conv2/Conv2D:0"], ["conv2"], name=label("model/conv2/out__9"),
                               perm=[0, 2, 3, 1])]
    graph = helper.make_graph(nodes, "tf2onnx", [helper.make_tensor_value_info("input_1:0", F, None)],
                              [helper.make_tensor_value_info("conv2", F, [None, None, None, 4])], initializer=inits)
    _dims(graph.input[0], dims)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    onnx.checker.check_model(model)
    return model


DIMS = {"unk": [1, "unk__5", "unk__6", 1], "minus_one": [-1, -1, -1, 1], "empty": [1, None, None, 1],
        "rgb_unk": ["unk__4", "unk__5", "unk__6", 3]}


@pytest.mark.parametrize("names", [True, False], ids=["named", "unnamed"])
@pytest.mark.parametrize("dims", sorted(DIMS))
def test_dynamic_nhwc_input_folds_by_the_transpose(dims, names):
    shape = DIMS[dims]
    m = keras_model(shape, names=names, auto_pad=dims != "empty")
    options = FoldOptions(channels="gray") if shape[3] == 3 else FoldOptions()
    folded, report = fold(m, options)
    assert report.verification.passed
    assert report.plan.chains[0].contract.layout == "NHWC"
    for h, w in ((37, 45), (48, 64)):
        gray = np.random.default_rng(h).integers(0, 256, (1, h, w, 1)).astype(np.float32)
        assert_same(m, folded, {"input_1:0": np.repeat(gray, shape[3], axis=3)}, {"input_1:0": gray})


@pytest.mark.parametrize("dims", ["unk", "minus_one"])
def test_dynamic_nhwc_input_with_a_fixed_size(dims):
    m = keras_model(DIMS[dims])
    folded, report = fold(m, FoldOptions(input_size=(37, 45)))
    assert report.verification.passed
    assert report.plan.chains[0].contract.shape[1:] == (37, 45, 1)
    gray = np.random.default_rng(0).integers(0, 256, (1, 37, 45, 1)).astype(np.float32)
    assert_same(m, folded, {"input_1:0": gray}, {"input_1:0": gray})


def test_compare_reads_an_nhwc_output_as_nhwc(tmp_path):
    """A tf2onnx model's output is N x H x W x C: compare took its last two axes (W x C) as the image, so the
    heatmap was a W x 4 strip and the border-ring columns measured a 'ring' over the channels. The 4-D outputs of
    an NHWC model are read as NHWC: the error map is H x W."""
    from edgefold.cli.main import main
    from edgefold.compare import CompareOptions, compare
    from edgefold.compare.heatmap import heatmap_for

    src, out = tmp_path / "k.onnx", tmp_path / "k.folded.onnx"
    onnx.save(keras_model([1, 40, 56, 3], seg_head=False), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    result = compare(str(src), str(out), CompareOptions())
    assert result.errors["conv2"].shape == (20, 28)  # the output's H x W (a stride-2 conv)
    assert heatmap_for(result) is not None


def test_fold_summary_border_ring_of_an_nhwc_output_is_over_h_and_w():
    """The self-check's border/interior split took an NHWC output's W x C as the image; it is H x W. An output
    whose error is zero except on its top row: all of it in the ring, none in the interior."""
    from edgefold.folding.verify import compare_outputs

    ref = np.zeros((1, 20, 28, 4), np.float32)
    got = ref.copy()
    got[:, 0, :, :] = 1.0  # row 0, every column and channel
    (stats,), _ = compare_outputs(["y"], [[ref]], [[got]], 1e-4, 1e-6, channels_last=True)
    assert stats.border_max == 1.0 and stats.interior_max == 0.0
    (flat,), _ = compare_outputs(["y"], [[ref]], [[got]], 1e-4, 1e-6)  # read as NCHW: a 'ring' over W x C
    assert flat.interior_max == 1.0
