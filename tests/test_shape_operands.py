"""Operands computed from the input's shape (issue 20 section 2): a zero Pad whose amounts are TF-style "same"
padding, and Resize sizes, exact at every size of a dynamic model; hand-built as exporters write them."""
from __future__ import annotations

import functools
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefold.errors import UnsupportedGraph
from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import F, assert_same, head, normalise, ops

I64 = onnx.TensorProto.INT64


def _i64(b: ModelBuilder, values, name: str = "k") -> str:  # noqa: ANN001
    return b.const(np.array(values, np.int64), name)


def _same_pads(b: ModelBuilder, x: str, k: int, s: int, lower: bool = False) -> str:
    """pads = [0, 0, top, left, 0, 0, bottom, right] from Shape(x) as TensorFlow's "SAME" rule, in int64
    arithmetic (tf2onnx, hand-written exporters): total = max((ceil(n / s) - 1) * s + k - n, 0)."""
    shape = b.op("Shape", [x])
    begins, ends = [], []
    for axis in (2, 3):
        n = b.op("Gather", [shape, _i64(b, axis)], axis=0)
        out = b.op("Div", [b.op("Add", [n, _i64(b, s - 1)]), _i64(b, s)])
        total = b.op("Max", [b.op("Sub", [b.op("Add", [b.op("Mul", [b.op("Sub", [out, _i64(b, 1)]), _i64(b, s)]),
                                                        _i64(b, k)]), n]), _i64(b, 0)])
        small = b.op("Div", [total, _i64(b, 2)])
        big = b.op("Sub", [total, small])
        begin, end = (big, small) if lower else (small, big)
        begins.append(b.op("Unsqueeze", [begin, _i64(b, [0])]))
        ends.append(b.op("Unsqueeze", [end, _i64(b, [0])]))
    zeros = _i64(b, [0, 0])
    return b.op("Concat", [zeros, *begins, zeros, *ends], axis=0)


def same_model(k: int = 3, s: int = 2, lower: bool = False, pads_fn=None, cout: int = 8) -> onnx.ModelProto:  # noqa: ANN001
    b = ModelBuilder(opset=17, seed=3)
    x = b.input("image", [1, 1, "h", "w"], np.uint8)
    n = normalise(b, b.op("Concat", [b.op("Cast", [x], to=F)] * 3, axis=1))
    pads = (pads_fn or _same_pads)(b, n, k, s, lower)
    y = b.conv(b.op("Pad", [n, pads], mode="constant"), 3, cout, k=k, stride=s, pad=0, name="stem")
    return b.model([head(b, y, cout)])


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, 1, h, w)).astype(np.uint8)


@pytest.mark.parametrize("lower", [False, True], ids=["same_upper", "same_lower"])
@pytest.mark.parametrize("k,s", [(3, 2), (7, 2), (4, 3)])
def test_hand_built_same_pad_folds_exactly_at_every_size(k, s, lower):
    m = same_model(k, s, lower)
    folded, report = fold(m)
    assert report.exact and report.verification.passed
    assert "Pad" not in ops(folded)
    for h, w in ((40, 52), (33, 35), (7, 2), (1, 1)):
        assert_same(m, folded, {"image": _frame(h, w)}, {"image": _frame(h, w)})


def _mod3_pads(b: ModelBuilder, x: str, k: int, s: int, lower: bool) -> str:  # noqa: ARG001
    """Zero rows at the bottom so H becomes a multiple of 3: a function of the size, not SAME padding."""
    h = b.op("Gather", [b.op("Shape", [x]), _i64(b, 2)], axis=0)
    extra = b.op("Unsqueeze", [b.op("Mod", [b.op("Sub", [_i64(b, 3), b.op("Mod", [h, _i64(b, 3)])]), _i64(b, 3)]),
                               _i64(b, [0])])
    return b.op("Concat", [_i64(b, [0, 0, 1, 1, 0, 0]), extra, _i64(b, [1])], axis=0)


def test_size_computed_pad_that_is_not_same_padding_is_refused_and_folds_at_a_fixed_size():
    m = same_model(pads_fn=_mod3_pads)
    with pytest.raises(UnsupportedGraph, match="Pad|SAME"):
        fold(m)
    folded, report = fold(m, FoldOptions(input_size=(40, 52)))
    assert report.verification.passed
    assert_same(m, folded, {"image": _frame(40, 52)}, {"image": _frame(40, 52)})


def _traced_pads(b: ModelBuilder, x: str, k: int, s: int, lower: bool) -> str:  # noqa: ARG001
    """What the legacy exporter traces from a Conv2dSame whose ``math.ceil`` froze at the export size (97):
    pads = 98 - H, right for H = 97 only, huge at small sizes and negative (a crop) at large ones."""
    h = b.op("Gather", [b.op("Shape", [x]), _i64(b, [2])], axis=0)
    p = b.op("Sub", [_i64(b, [98]), h])
    return b.op("Concat", [_i64(b, [0, 0]), p, p, _i64(b, [0, 0]), p, p], axis=0)


def test_size_computed_pad_that_crops_at_some_size_is_refused_saying_so():
    """The refusal said 'zero-pads ... other than the spatial axes of an NCHW tensor' for pads on H and W only -
    it was refused because they are negative at some sizes: the message says that, at which size, and the fix."""
    with pytest.raises(UnsupportedGraph) as err:
        fold(same_model(pads_fn=_traced_pads))
    text = str(err.value)
    assert "negative" in text and "other than the spatial axes" not in text and "--input-size" in text, text
    assert re.search(r"at input size \d+x\d+", text) and "Pad" in text, text


@functools.cache
def _sessions(k: int, s: int) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    m = same_model(k, s)
    folded, _ = fold(m, FoldOptions(verify=False))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return tuple(ort.InferenceSession(x.SerializeToString(), so, providers=["CPUExecutionProvider"])
                 for x in (m, folded))  # type: ignore[return-value]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(k=st.sampled_from([3, 5]), s=st.sampled_from([1, 2, 3]), h=st.integers(1, 70), w=st.integers(1, 70),
       seed=st.integers(0, 2**16))
def test_same_pad_sweep_of_sizes(k, s, h, w, seed):
    original, folded = _sessions(k, s)
    x = _frame(h, w, seed)
    (want,), (got,) = original.run(None, {"image": x}), folded.run(None, {"image": x})
    assert want.shape == got.shape
    assert np.abs(want - got).max() <= 1e-5 + 1e-4 * np.abs(want).max()


# ---- Resize whose sizes come from the input's shape -----------------------------------------------------------
def resize_model(mode: str = "linear", opset: int = 13, antialias: bool = False, axes: bool = False
                 ) -> onnx.ModelProto:
    """The legacy exporter's ``F.interpolate(x, size=(h // 2, w // 3))``: sizes = Concat(Shape(x)[:2], h // 2,
    w // 3); with ``axes`` (opset 18) only the spatial sizes."""
    b = ModelBuilder(opset=opset, seed=4)
    x = b.input("image", [1, 1, "h", "w"], np.uint8)
    n = normalise(b, b.op("Expand", [b.op("Cast", [x], to=F), _i64(b, [1, 3, 1, 1])]))
    shape = b.op("Shape", [n])
    spatial = b.op("Div", [b.op("Slice", [shape, _i64(b, [2]), _i64(b, [4])]), _i64(b, [2, 3])])
    extra = {"antialias": 1} if antialias else {}
    if axes:
        r = b.op("Resize", [n, "", "", spatial], mode=mode, axes=[2, 3], **extra)
    else:
        sizes = b.op("Concat", [b.op("Slice", [shape, _i64(b, [0]), _i64(b, [2])]), spatial], axis=0)
        r = b.op("Resize", [n, "", "", sizes], mode=mode, **extra)
    y = b.conv(r, 3, 8, k=3, stride=1, pad=1, name="stem")
    return b.model([head(b, y, 8)])


@pytest.mark.parametrize("mode,opset,antialias,axes", [("nearest", 13, False, False), ("linear", 13, False, False),
                                                       ("cubic", 13, False, False), ("linear", 18, True, False),
                                                       ("cubic", 18, True, True)])
def test_resize_with_sizes_from_the_shape_folds_exactly_at_every_size(mode, opset, antialias, axes):
    m = resize_model(mode, opset, antialias, axes)
    folded, report = fold(m)
    assert report.exact and report.verification.passed
    assert ops(folded).count("Expand") == 0
    for h, w in ((40, 52), (33, 35), (9, 7)):
        assert_same(m, folded, {"image": _frame(h, w)}, {"image": _frame(h, w)})
    fixed, _ = fold(m, FoldOptions(input_size=(33, 35)))
    assert "Slice" not in ops(fixed)  # the sizes are a constant: their shape arithmetic is gone
    assert_same(m, fixed, {"image": _frame(33, 35)}, {"image": _frame(33, 35)})


def test_resize_of_the_channel_axis_from_the_shape_is_refused():
    b = ModelBuilder(opset=13, seed=4)
    x = b.input("image", [1, 1, "h", "w"], np.uint8)
    n = normalise(b, b.op("Expand", [b.op("Cast", [x], to=F), _i64(b, [1, 3, 1, 1])]))
    sizes = b.op("Mul", [b.op("Shape", [n]), _i64(b, [1, 2, 1, 1])])
    r = b.op("Resize", [n, "", "", sizes], mode="nearest")
    y = b.conv(b.op("Slice", [r, _i64(b, [0]), _i64(b, [3]), _i64(b, [1])]), 3, 8, k=3, stride=1, pad=1)
    with pytest.raises(UnsupportedGraph, match="channel axis"):
        fold(b.model([y]))


def _same_pads_defined_from_4(b: ModelBuilder, x: str, k: int, s: int, lower: bool) -> str:
    """SAME pads plus 0 x sum(ConstantOfShape(h - 4)): the arithmetic (and the model) fails below 4 rows."""
    h = b.op("Gather", [b.op("Shape", [x]), _i64(b, [2])], axis=0)
    zeros = b.op("ConstantOfShape", [b.op("Sub", [h, _i64(b, [4])])],
                 value=onnx.numpy_helper.from_array(np.array([0], np.int64), "v"))
    nothing = b.op("ReduceSum", [zeros, _i64(b, [0])], keepdims=1)
    return b.op("Add", [_same_pads(b, x, k, s, lower), nothing])


def test_same_pad_whose_arithmetic_fails_at_small_sizes_still_folds():
    m = same_model(pads_fn=_same_pads_defined_from_4)
    folded, report = fold(m)
    assert report.verification.passed and "Pad" not in ops(folded)
    for h, w in ((40, 52), (33, 35), (4, 7)):
        assert_same(m, folded, {"image": _frame(h, w)}, {"image": _frame(h, w)})


def test_same_pad_of_a_fixed_size_resize_folds_with_input_size(tmp_path):
    """``F.interpolate(size=(24, 30))`` then timm's ``Conv2dSame``, legacy export: the pads are computed from
    ``Shape`` of the Resize's output. The README's flow (``fold --input-size`` then ``compare``) folds it
    exactly; the dynamic model stays refused by name."""
    from edgefold.cli.main import main
    b = ModelBuilder(opset=17, seed=5)
    x = b.input("image", [1, 1, "h", "w"], np.uint8)
    n = normalise(b, b.op("Concat", [b.op("Cast", [x], to=F)] * 3, axis=1))
    sizes = b.op("Concat", [b.op("Slice", [b.op("Shape", [n]), _i64(b, [0]), _i64(b, [2])]), _i64(b, [24, 30])],
                 axis=0)
    r = b.op("Resize", [n, "", "", sizes], mode="linear")
    y = b.conv(b.op("Pad", [r, _same_pads(b, r, 3, 2)], mode="constant"), 3, 8, k=3, stride=2, pad=0, name="stem")
    src, out = tmp_path / "m.onnx", tmp_path / "m.folded.onnx"
    onnx.save(b.model([head(b, y, 8)]), src)
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 3 and not out.exists()
    assert main(["fold", str(src), "-o", str(out), "--input-size", "40x52", "-q"]) == 0
    assert main(["compare", str(src), str(out)]) == 0
    assert_same(onnx.load(src), onnx.load(out), {"image": _frame(40, 52)}, {"image": _frame(40, 52)})


def test_many_removed_nodes_are_summarised_per_op():
    """A SAME pad computed from the input's size removes dozens of shape-arithmetic nodes with the normalisation:
    the summary's first line listed every one (57 ops on timm's Conv2dSame); it counts them per op instead."""
    folded, report = fold(same_model())
    first = report.to_text().splitlines()[0]
    assert len(report.removed[0]) > 12 and len(first) < 250, first
    assert re.search(r"Gather x\d+", first) and "Pad" in first, first
