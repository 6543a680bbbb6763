"""INT8 MAC share (``precision.mixed.int8_mac_share``) on PP-OCR's text-direction classifier: Paddle declares its
batch as dim_value -1 (dynamic, not a size) and its last MatMul reads a Reshape to a computed shape."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.precision.mixed import int8_mac_share
from tests.models import RAPIDOCR, wheel_model

CLS = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.fixture(scope="module")
def classifier():
    return wheel_model(RAPIDOCR, CLS)


@pytest.fixture(scope="module")
def quantized(classifier):
    from onnx import version_converter

    from edgefold.core.affine import ChannelAffine
    from edgefold.core.frames import InputFeed
    from edgefold.graph.shapes import specialise
    from edgefold.precision.int8 import quantize

    m = version_converter.convert_version(specialise(classifier, (48, 192)), 13)
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_value == -1  # Paddle's dynamic batch, kept
    feed = InputFeed(m.graph.input[0].name, "float32", (1, 3, 48, 192), 1, ChannelAffine.identity(3))
    frames = [np.random.default_rng(i).uniform(-1, 1, (3, 48, 192)) for i in range(2)]
    return quantize(m, feed, frames, "float-first", "minmax")


def test_the_share_of_the_paddle_classifier_is_counted(classifier, quantized):
    assert int8_mac_share(classifier, (48, 192)) == 0.0  # fp32: counted (it was None), none in INT8
    share = int8_mac_share(quantized, (48, 192))
    assert share is not None and 0.95 < share <= 1.0


def test_the_last_matmul_behind_a_computed_reshape_is_counted(classifier):
    from edgefold.graph.shapes import specialise
    from edgefold.inspect.count import inventory

    m = specialise(classifier, (48, 192))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    (matmul,) = [layer for layer in inventory(m).layers if layer.op == "MatMul"]
    assert matmul.macs == 200 * 2  # 200 pooled features -> 2 directions


def test_the_share_does_not_depend_on_node_names(quantized):
    stripped = onnx.ModelProto()
    stripped.CopyFrom(quantized)
    for n in stripped.graph.node:
        n.name = ""
    repeated = onnx.ModelProto()
    repeated.CopyFrom(quantized)
    for n in repeated.graph.node:
        n.name = "same"
    share = int8_mac_share(quantized, (48, 192))
    assert share is not None
    assert int8_mac_share(stripped, (48, 192)) == share == int8_mac_share(repeated, (48, 192))
