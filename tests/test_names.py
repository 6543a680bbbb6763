"""Every verb on models whose node names are missing or repeated (issue 20 §4): ONNX node names are optional,
converters leave them empty or repeat them, and nothing in edgefold may identify a node by one.

Each case runs the verb on the model as named and as renamed (``tests.models.renamed``) and wants the same
result: the fold's output equal to the named fold's, untouched node names kept byte for byte, every name
edgefold adds its own. Small models and sizes keep the matrix cheap; builds stop before TensorRT (--no-engine).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from tests.models import NORM_FLAGS, F, assert_names_kept, gray_model, normalise, renamed, run

RENAMED = ("stripped", "one name", "two alike")
H, W = 32, 40


def issue_model(h: int = H, w: int = W) -> onnx.ModelProto:
    """The issue's bare network (it expects normalised input): conv 7x7/s2 -> ReLU -> max pool -> conv -> ReLU ->
    GlobalAveragePool -> Flatten."""
    b = ModelBuilder(seed=3)
    x = b.input("x", [1, 3, h, w])
    y = b.op("Relu", [b.conv(x, 3, 8, k=7, stride=2)])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.op("Relu", [b.conv(y, 8, 8, k=3)])
    return b.model([b.op("Flatten", [b.op("GlobalAveragePool", [y])])])


def in_graph_rgb(h: int = H, w: int = W) -> onnx.ModelProto:
    """RGB 0..255 with the ImageNet normalisation in the graph, and two stems reading it."""
    b = ModelBuilder(seed=4)
    x = normalise(b, b.input("image", [1, 3, h, w]))
    left, right = b.conv(x, 3, 4, k=3, stride=2), b.conv(x, 3, 4, k=5, stride=2)
    return b.model([b.conv(b.op("Relu", [b.op("Add", [left, right])]), 4, 2, k=3)])


def adapter_model(h: int = H, w: int = W) -> onnx.ModelProto:
    """uint8 gray -> a learned 1->3 1x1 adapter -> an unpadded stem."""
    b = ModelBuilder(seed=5)
    x = b.op("Cast", [b.input("image", [1, 1, h, w], np.uint8)], to=F)
    y = b.conv(b.conv(x, 1, 3, k=1, pad=0), 3, 8, k=3, stride=2, pad=0)
    return b.model([b.conv(b.op("Relu", [y]), 8, 2, k=3)])


def lanes_model(h: int = H, w: int = W) -> onnx.ModelProto:
    """Channel by channel: x[:, c] with its own scale and offset, stacked back (Unsqueeze + Concat)."""
    b = ModelBuilder(seed=6)
    x = b.input("image", [1, 3, h, w])
    parts = []
    for c, (mean, std) in enumerate(((0.485, 0.229), (0.456, 0.224), (0.406, 0.225))):
        lane = b.op("Gather", [x, b.const(np.array(c, np.int64))], axis=1)
        lane = b.op("Div", [b.op("Sub", [b.op("Div", [lane, b.const(np.float32(255))]), b.const(np.float32(mean))]),
                            b.const(np.float32(std))])
        parts.append(b.op("Unsqueeze", [lane, b.const(np.array([1], np.int64))]))
    y = b.conv(b.op("Concat", parts, axis=1), 3, 8, k=3, stride=2)
    return b.model([b.conv(b.op("Relu", [y]), 8, 2, k=3)])


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _fold_both(model, naming, tmp_path, *flags) -> tuple[onnx.ModelProto, onnx.ModelProto, onnx.ModelProto]:
    """(renamed original, its fold, the named model's fold), both folds exit 0."""
    other = renamed(model, naming)
    folds = []
    for label, m in (("named", model), ("renamed", other)):
        out = tmp_path / f"{label}.folded.onnx"
        assert main(["fold", _save(m, tmp_path / f"{label}.onnx"), "-o", str(out), "-q", *flags]) == 0, label
        folds.append(onnx.load(str(out)))
    return other, folds[1], folds[0]


def _feed(model: onnx.ModelProto, seed: int = 0) -> dict:
    vi = model.graph.input[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
    shape = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
    high = 256 if dtype == np.uint8 else 255
    return {vi.name: np.random.default_rng(seed).integers(0, high, shape).astype(dtype)}


def _same_fold(named_fold, renamed_fold, original):
    """The renamed model folds to what the named one does (outputs equal), untouched names kept."""
    feed = _feed(named_fold)
    for a, b in zip(run(named_fold, feed), run(renamed_fold, feed)):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6 * (np.abs(a).max() + 1)
    assert_names_kept(original, renamed_fold)


FOLDS = {  # model, flags
    "bare rgb": (issue_model, NORM_FLAGS),
    "bare gray": (issue_model, ["--gray", *NORM_FLAGS]),
    "bare bgr uint8": (issue_model, ["--bgr", "--input-dtype", "uint8", *NORM_FLAGS]),
    "in-graph rgb, two stems": (in_graph_rgb, []),
    "in-graph gray, exact border": (lambda: gray_model(h=H, w=W, cout=4), []),
    "in-graph gray, approx border": (lambda: gray_model(h=H, w=W, cout=4), ["--border", "approx"]),
    "adapter": (adapter_model, []),
    "lanes": (lanes_model, ["--gray"]),
}


@pytest.mark.parametrize("naming", RENAMED)
@pytest.mark.parametrize("case", sorted(FOLDS))
def test_fold_does_not_depend_on_node_names(case, naming, tmp_path):
    make, flags = FOLDS[case]
    original, folded, named = _fold_both(make(), naming, tmp_path, *flags)
    _same_fold(named, folded, original)


@pytest.mark.parametrize("naming", RENAMED)
@pytest.mark.parametrize("fmt", ["BayerRG8", "NV12", "Mono12", "YUYV"])
def test_pixel_formats_do_not_depend_on_node_names(fmt, naming, tmp_path):
    """The issue's case: --pixel-format on a model without names exited 5 ("Graph output ... is not an output of
    any node"): the front end keyed the stems it replaced by name, and dropped every unnamed node."""
    flags = ["--pixel-format", fmt, *NORM_FLAGS] + (["--gray"] if fmt == "Mono12" else [])
    original, folded, named = _fold_both(issue_model(), naming, tmp_path, *flags)
    from edgefold.core.contract import Meta, meta_json

    assert meta_json(folded, Meta.FRONTEND)["form"] == meta_json(named, Meta.FRONTEND)["form"]
    _same_fold(named, folded, original)


@pytest.mark.parametrize("naming", RENAMED)
def test_two_composed_stems_named_alike_get_their_own_weights(naming, tmp_path):
    """Two stems reading the frame, composed for Bayer: each its own interior/strip weights (a shared prefix
    made them overwrite each other)."""
    original, folded, named = _fold_both(in_graph_rgb(), naming, tmp_path, "--pixel-format", "BayerRG8")
    _same_fold(named, folded, original)


@pytest.mark.parametrize("naming", RENAMED)
@pytest.mark.parametrize("precision", ["--fp16", "--int8"])
def test_build_compare_infer_inspect_bench(precision, naming, tmp_path):
    """build (FP16; INT8 with calibration, float-first so the folded convs are found by output), with DeepStream
    and Triton configs; then compare, infer, inspect and bench on the renamed models."""
    model = renamed(gray_model(h=H, w=W, cout=4), naming)
    src = _save(model, tmp_path / "m.onnx")
    frames = tmp_path / "calib.npy"
    np.save(frames, np.random.default_rng(0).integers(0, 256, (6, H, W)).astype(np.uint8))
    out = tmp_path / "m.engine"
    extra = ["--calib", str(frames), "--int8-strategy", "float-first"] if precision == "--int8" else []
    assert main(["build", src, precision, *extra, "-o", str(out), "--no-engine", "--deepstream",
                 "--triton", str(tmp_path / "repo"), "--triton-onnx"]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    prepared = onnx.load(str(tmp_path / "m.prepared.onnx"))
    names = [n.name for n in prepared.graph.node]
    assert all(names) and len(set(names)) == len(names)  # what TensorRT and the precision passes address
    folded_convs = side["fold"]["folded_convs"]
    assert folded_convs and all(any(c in n.output for n in prepared.graph.node) for c in folded_convs)
    if precision == "--int8":  # float-first: the folded conv reads no Q/DQ; the next conv does
        producer = {o: n for n in prepared.graph.node for o in n.output}
        stem = next(n for n in prepared.graph.node if folded_convs[0] in n.output)
        assert all(producer[i].op_type != "DequantizeLinear" for i in stem.input[:2] if i in producer)
        assert any(n.op_type == "DequantizeLinear" for n in prepared.graph.node)
    folded = tmp_path / "f.onnx"
    assert main(["fold", src, "-o", str(folded), "-q"]) == 0
    assert main(["compare", src, str(folded), "--random", "2"]) == 0
    frame, inferred = tmp_path / "frame.npy", tmp_path / "inferred"
    np.save(frame, np.random.default_rng(1).integers(0, 256, (H, W)).astype(np.uint8))
    inferred.mkdir()
    assert main(["infer", str(folded), str(frame), "--out", str(inferred)]) == 0
    assert (inferred / "outputs.json").exists()
    assert main(["bench", str(folded), "--baseline", src, "--frames", "2", "--warmup", "0"]) == 0


@pytest.mark.parametrize("naming", RENAMED)
def test_inspect_lists_removed_nodes_by_output(naming, tmp_path, capsys):
    """inspect --against: the preprocessing the fold removed, whatever the names (an unnamed node was skipped)."""
    model = renamed(gray_model(h=H, w=W, cout=4), naming)
    src = _save(model, tmp_path / "m.onnx")
    folded = tmp_path / "f.onnx"
    assert main(["fold", src, "-o", str(folded), "-q"]) == 0
    capsys.readouterr()
    assert main(["inspect", src, "--against", str(folded), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(r["op"] for r in data["removed"]) == ["Cast", "Concat", "Div", "Div", "Sub"]
    from edgefold.inspect.count import inventory

    first = inventory(onnx.load(str(folded))).first_conv()  # the folded stem (not the border term's conv)
    assert first is not None and first.input_shapes[1] == (4, 1, 7, 7)


@pytest.mark.parametrize("naming", RENAMED)
def test_frontend_dct_model_without_names(naming, tmp_path):
    from tests.test_frontends import _dct_model

    src = _save(renamed(_dct_model("conv1x1"), naming), tmp_path / "dct.onnx")
    out = tmp_path / "pixels.onnx"
    assert main(["frontend", "dct", "--model", src, "-o", str(out), "--select-low", "10"]) == 0
    m = onnx.load(str(out))
    assert [n.op_type for n in m.graph.node][:2] == ["Cast", "Conv"]


@pytest.mark.parametrize("naming", RENAMED)
def test_fp16_keeps_an_unnamed_overflowing_node_in_float(naming):
    """A node whose output overflows fp16 stays in float32 whatever its name (unnamed, it was reported as '' and
    kept nothing: the fp16 model gave inf)."""
    from edgefold.core.affine import ChannelAffine
    from edgefold.core.frames import InputFeed
    from edgefold.precision.fp16 import to_fp16

    b = ModelBuilder(seed=7)
    x = b.input("image", [1, 3, 8, 8])
    big = b.op("Mul", [b.conv(x, 3, 4, k=3), b.const(np.float32(1e5))])
    model = renamed(b.model([b.op("Mul", [big, b.const(np.float32(1e-5))])]), naming)
    feed = InputFeed("image", "float32", (1, 3, 8, 8), 1, ChannelAffine.identity(3))
    frames = [np.random.default_rng(0).uniform(0, 1, (3, 8, 8)).astype(np.float32)]
    fp16, hot = to_fp16(model, feed, frames)
    assert len(hot) == 2 and all(hot)  # the overflowing Mul and the Mul that reads it
    ref, got = run(model, {"image": frames[0][None]})[0], run(fp16, {"image": frames[0][None]})[0]
    assert np.isfinite(got).all() and np.abs(got - ref).max() <= 1e-2 * np.abs(ref).max()


def test_added_names_never_collide_with_the_models_own(tmp_path):
    """A model that already uses the names the fold would pick (the stem's NAME/folded_W, NAME/pre_border, the
    input's raw tensor): the fold picks others, and the result is exact."""
    model = gray_model(h=H, w=W, cout=4)
    g = model.graph
    second = [n for n in g.node if n.op_type == "Conv"][1]
    for old, new in ((second.input[1], "stem/folded_W"), (second.output[0], "stem/pre_border")):
        for n in g.node:
            n.input[:] = [new if i == old else i for i in n.input]
            n.output[:] = [new if o == old else o for o in n.output]
        for t in g.initializer:
            t.name = new if t.name == old else t.name
        for v in (*g.value_info, *g.output):
            v.name = new if v.name == old else v.name
    onnx.checker.check_model(model)
    original, folded, named = _fold_both(model, "one name", tmp_path)
    inits = [t.name for t in folded.graph.initializer]
    assert len(inits) == len(set(inits)) and "stem/folded_W" in inits
    _same_fold(named, folded, original)
    from tests.models import assert_same, gray_frame

    assert_same(original, folded, {"image": gray_frame(H, W)}, {"image": gray_frame(H, W)})


def test_fresh_names_avoid_the_graph_and_each_other():
    from edgefold.graph.names import FreshNames

    b = ModelBuilder()
    x = b.input("x", [1, 3, 8, 8])
    model = b.model([b.conv(x, 3, 4, name="a/b")])
    fresh = FreshNames(model.graph)
    assert fresh.name("x") == "x_2" and fresh.name("x") == "x_3" and fresh.name("y") == "y"
    assert fresh.prefix("a") == "a_2"  # 'a/b' lives under 'a'
    assert fresh.prefix("c") == "c" and fresh.prefix("c") == "c_2"
    assert fresh.name("c/raw") == "c_raw"  # under a prefix given out: the prefix's owner's
    assert fresh.name("a/b") == "a/b_2"


@pytest.mark.parametrize("naming", RENAMED)
def test_int8_recentre_with_a_composed_bayer_stem(naming, tmp_path):
    """build --int8 recentre --pixel-format BayerRG8: the fold's recentring Add and the composed pieces are found by
    their outputs, so the mosaic - 128 is what the composed conv quantises, with scale 1."""
    from onnx import numpy_helper

    from tests.test_pixel_formats import rgb_model

    src = _save(renamed(rgb_model(24, 32), naming), tmp_path / "o.onnx")
    np.save(tmp_path / "f.npy", np.random.default_rng(0).integers(0, 256, (6, 24, 32)).astype(np.uint8))
    out = tmp_path / "r.engine"
    assert main(["build", src, "--int8", "--int8-strategy", "recentre", "--calib", str(tmp_path / "f.npy"), "-o",
                 str(out), "--no-engine", "--pixel-format", "BayerRG8", "--accept-accuracy-drop"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["frontend"]["form"] == "composed"
    m = onnx.load(str(tmp_path / "r.prepared.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0].endswith("/interior_px")]
    assert len(q) == 1 and float(inits[q[0].input[1]]) == 1.0
