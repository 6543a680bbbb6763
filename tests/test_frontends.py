"""Front ends beyond normalisation: the DCT front end against scipy on real images, DCT-domain models
taking raw pixels, learned adapters, and an Oct-ResNet-style first layer."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from skimage import data

from edgefold.cli.main import main
from edgefold.errors import UsageError
from edgefold.folding import FoldOptions, fold
from edgefold.frontend.dct import DctSpec, reference_coefficients, zigzag
from edgefold.frontend.graph import frontend_model
from edgefold.graph.builder import ModelBuilder
from edgefold.inspect.count import inventory
from tests.models import F, assert_same, conv_weight, gray_frame, normalise, run


@pytest.mark.parametrize("components, image, order, selection", [
    ("y", "camera", "zigzag", dict()), ("y", "moon", "rowmajor", dict(select=(0, 1, 8, 9, 63))),
    ("ycbcr", "astronaut", "zigzag", dict(select_low=6)), ("ycbcr", "coffee", "rowmajor", dict(select=(0, 64, 128, 70))),
])
def test_dct_front_end_equals_scipy_on_every_block_of_real_images(components, image, order, selection):
    img = getattr(data, image)()
    spec = DctSpec(components=components, order=order, **selection)
    model = frontend_model(spec, dtype="uint8")
    x = img[None, None] if img.ndim == 2 else np.moveaxis(img, -1, 0)[None]
    got = run(model, {"image": x})[0][0]
    ref = reference_coefficients(img, spec)
    assert got.shape == ref.shape == (len(spec.channels()), img.shape[0] // 8, img.shape[1] // 8)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_zigzag_order_and_selection_keep_the_other_channels_untouched():
    assert zigzag()[:10] == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24] and sorted(zigzag()) == list(range(64))
    full_w, full_b = DctSpec().weights()
    sel = (5, 0, 17)
    w, b = DctSpec(select=sel).weights()
    np.testing.assert_array_equal(w, full_w[list(sel)])
    np.testing.assert_array_equal(b, full_b[list(sel)])
    # orthonormal basis: W W^T = I over the 64 coefficients
    basis = DctSpec(order="rowmajor", level_shift=False).weights()[0].reshape(64, 64)
    np.testing.assert_allclose(basis @ basis.T, np.eye(64), atol=1e-12)


def _dct_model(first: str, channels: int = 10, h8: int = 12, w8: int = 16):
    b = ModelBuilder(seed=5)
    x = b.input("coef", [1, channels, h8, w8], np.float32)
    if first == "conv1x1":
        y = b.conv(x, channels, 16, k=1, pad=0, name="first")
    elif first == "bn":
        rng = np.random.default_rng(1)
        y = b.op("BatchNormalization", [x] + [b.const(v.astype(np.float32)) for v in (
            rng.uniform(0.5, 2, channels), rng.uniform(-1, 1, channels), rng.uniform(-50, 50, channels),
            rng.uniform(10, 100, channels))], name="first")
        y = b.conv(y, channels, 16, k=1, pad=0)
    else:
        y = b.conv(b.op("Relu", [x]), channels, 16, k=3)
    y = b.conv(b.op("Relu", [y]), 16, 8, k=3)
    return b.model([y])


@pytest.mark.parametrize("first, merged", [("conv1x1", "Conv 'first'"), ("bn", "BatchNormalization 'first'"),
                                           ("relu", "nothing")])
def test_dct_domain_model_takes_raw_pixels(first, merged, tmp_path, capsys):
    src, out = tmp_path / "dctnet.onnx", tmp_path / "pixels.onnx"
    onnx.save(_dct_model(first), str(src))
    assert main(["frontend", "dct", "--model", str(src), "-o", str(out), "--select-low", "10"]) == 0
    assert merged in capsys.readouterr().out
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 96, 128]
    if first != "relu":
        assert "first" not in {n.name for n in m.graph.node}
    # and the real camera photo, cropped, through both paths
    spec = DctSpec(select_low=10)
    photo = data.camera()[:96, :128]
    coef = run(frontend_model(spec, dtype="uint8"), {"image": photo[None, None]})[0]
    ref = run(onnx.load(str(src)), {"coef": coef})[0]
    got = run(m, {m.graph.input[0].name: photo[None, None]})[0]
    assert np.abs(ref - got).max() <= 1e-4 * np.abs(ref).max()
    contract = json.loads({p.key: p.value for p in m.metadata_props}["edgefold.input_contracts"])[0]
    assert contract["channels"] == 1 and contract["dtype"] == "uint8"


def test_dct_front_end_cli_and_selection_mismatch(tmp_path, capsys):
    assert main(["frontend", "dct", "-o", str(tmp_path / "d.onnx"), "--components", "ycbcr",
                 "--select", "0,1,2,64,128"]) == 0
    assert "3-channel uint8 pixels -> 5 coefficient channels" in capsys.readouterr().out
    src = tmp_path / "dctnet.onnx"
    onnx.save(_dct_model("conv1x1"), str(src))
    assert main(["frontend", "dct", "--model", str(src), "-o", str(tmp_path / "x.onnx"), "--select-low", "6"]) == 2
    assert "has 10 channels, the front end selects 6" in capsys.readouterr().err
    with pytest.raises(UsageError):
        DctSpec(select=(0, 64))  # gray has only 64 coefficients
    with pytest.raises(UsageError):
        DctSpec(select=(1,), select_low=3)


def _adapter_model(k1: int, p1: int, k2: int, s2: int, p2: int, dynamic: bool = False):
    b = ModelBuilder(seed=9)
    x = b.input("image", [1, 1, "h" if dynamic else 40, "w" if dynamic else 44], np.uint8)
    x = b.op("Cast", [x], to=F)
    a = b.conv(x, 1, 3, k=k1, pad=p1, name="adapter")
    y = b.conv(a, 3, 16, k=k2, stride=s2, pad=p2, name="stem")
    return b.model([b.conv(b.op("Relu", [y]), 16, 4, k=3)])


@pytest.mark.parametrize("k1, p1, k2, s2, p2", [(3, 1, 7, 2, 0), (3, 0, 3, 1, 0), (5, 2, 3, 2, 0), (1, 0, 7, 2, 3)])
@pytest.mark.parametrize("dynamic", [False, True])
def test_learned_adapter_composes_into_one_single_channel_conv(k1, p1, k2, s2, p2, dynamic):
    m = _adapter_model(k1, p1, k2, s2, p2, dynamic)
    folded, report = fold(m)
    assert "adapter" not in {n.name for n in folded.graph.node}
    assert conv_weight(folded, "stem").shape == (16, 1, k1 + k2 - 1, k1 + k2 - 1)
    for size in ((40, 44), (29, 37)) if dynamic else ((40, 44),):
        x = gray_frame(*size)
        assert_same(m, folded, {"image": x}, {"image": x})


def _normalised_adapter_model(k1: int, p1: int, k2: int, s2: int, dynamic: bool) -> onnx.ModelProto:
    """x / 255, minus a mean, over a std in the graph, then the learned adapter and an unpadded stem."""
    b = ModelBuilder(seed=11)
    x = b.input("image", [1, 1, "h" if dynamic else 40, "w" if dynamic else 44], np.uint8)
    x = b.op("Div", [b.op("Cast", [x], to=F), b.const(np.float32(255.0))])
    x = b.op("Div", [b.op("Sub", [x, b.const(np.float32(0.45))]), b.const(np.float32(0.226))])
    a = b.conv(x, 1, 3, k=k1, pad=p1, name="adapter")
    y = b.conv(a, 3, 16, k=k2, stride=s2, pad=0, name="stem")
    return b.model([b.conv(b.op("Relu", [y]), 16, 4, k=3)])


@pytest.mark.parametrize("k1, p1, k2, s2", [(3, 1, 7, 2), (3, 0, 3, 1), (5, 2, 3, 2)])
@pytest.mark.parametrize("dynamic", [False, True])
def test_adapter_fed_by_in_graph_normalisation_composes_into_one_conv(k1, p1, k2, s2, dynamic):
    m = _normalised_adapter_model(k1, p1, k2, s2, dynamic)
    folded, report = fold(m)
    assert report.exact
    names = {n.name for n in folded.graph.node}
    assert "adapter" not in names and not {"Div", "Sub"} & {n.op_type for n in folded.graph.node}
    assert conv_weight(folded, "stem").shape == (16, 1, k1 + k2 - 1, k1 + k2 - 1)
    for size in ((40, 44), (29, 37)) if dynamic else ((40, 44),):
        x = gray_frame(*size)
        assert_same(m, folded, {"image": x}, {"image": x})


def test_adapter_with_a_padded_stem_is_refused_unless_approximate():
    m = _adapter_model(3, 1, 7, 2, 3)
    with pytest.raises(Exception, match="'adapter'.*zero-pads"):
        fold(m)
    folded, report = fold(m, FoldOptions(border="approx"))
    assert not report.exact and conv_weight(folded, "stem").shape == (16, 1, 9, 9)
    assert report.verification.worst.max_rel > 1e-3  # the border error it leaves is reported


def test_adapter_followed_by_a_nonlinearity_is_refused_by_name():
    b = ModelBuilder(seed=9)
    x = b.input("image", [1, 1, 32, 32], np.float32)
    a = b.op("Relu", [b.conv(x, 1, 3, k=3, pad=1, name="adapter")], name="act")
    m = b.model([b.conv(a, 3, 8, k=3, name="stem")])
    with pytest.raises(Exception, match="'adapter'.*'act' \\(Relu\\).*not be exact"):
        fold(m)


def oct_resnet(h: int = 64, w: int = 64) -> onnx.ModelProto:
    """Oct-ResNet-style: gray preprocessing in the graph, a first OctConv (alpha_in = 0, alpha_out = 0.25:
    input -> high conv, input -> AvgPool -> low conv), two octave blocks, low branch upsampled and merged."""
    b = ModelBuilder(seed=11)
    x = b.input("image", [1, 1, h, w], np.uint8)
    n = normalise(b, b.op("Concat", [b.op("Cast", [x], to=F)] * 3, axis=1))
    high = b.op("Relu", [b.conv(n, 3, 24, k=3, name="oct_first_high")])
    low = b.op("Relu", [b.conv(b.op("AveragePool", [n], kernel_shape=[2, 2], strides=[2, 2]), 3, 8, k=3,
                               name="oct_first_low")])
    for i in range(2):
        h2h = b.conv(high, 24, 24, k=3)
        l2h = b.op("Resize", [b.conv(low, 8, 24, k=3), "", b.const(np.array([1, 1, 2, 2], np.float32))],
                   mode="nearest")
        h2l = b.conv(b.op("AveragePool", [high], kernel_shape=[2, 2], strides=[2, 2]), 24, 8, k=3)
        l2l = b.conv(low, 8, 8, k=3)
        high = b.op("Relu", [b.op("Add", [h2h, l2h])], name=f"oct_block{i}_high")
        low = b.op("Relu", [b.op("Add", [h2l, l2l])], name=f"oct_block{i}_low")
    up = b.op("Resize", [low, "", b.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    y = b.conv(b.op("Concat", [high, up], axis=1), 32, 4, k=1, pad=0, name="head")
    return b.model([y])


def test_oct_resnet_folds_both_branches_exactly_and_inspect_counts_it(tmp_path, capsys):
    m = oct_resnet()
    folded, report = fold(m)
    convs = {c.node_name: c for c in report.plan.chains[0].convs}
    assert set(convs) == {"oct_first_high", "oct_first_low"}
    assert conv_weight(folded, "oct_first_high").shape == (24, 1, 3, 3)
    assert conv_weight(folded, "oct_first_low").shape == (8, 1, 3, 3)
    for x in (gray_frame(64, 64), np.zeros((1, 1, 64, 64), np.uint8), np.full((1, 1, 64, 64), 255, np.uint8)):
        assert_same(m, folded, {"image": x}, {"image": x})
    before, after = inventory(m), inventory(folded)
    high = next(la for la in before.layers if la.name == "oct_first_high")
    assert high.macs == 64 * 64 * 24 * 3 * 9 and high.params == 24 * 27 + 24
    assert next(la for la in after.layers if la.name == "oct_first_high").macs * 3 == high.macs
    src, out = tmp_path / "oct.onnx", tmp_path / "oct.folded.onnx"
    onnx.save(m, str(src))
    onnx.save(folded, str(out))
    assert main(["inspect", str(src), "--against", str(out)]) == 0
    assert "(0.333x)" in capsys.readouterr().out


@pytest.mark.gpu
def test_oct_resnet_engine_builds(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    src = tmp_path / "oct.onnx"
    onnx.save(oct_resnet(), str(src))
    assert main(["build", str(src), "--fp16", "-o", str(tmp_path / "oct.engine")]) == 0
    assert main(["compare", str(src), str(tmp_path / "oct.engine")]) == 0
