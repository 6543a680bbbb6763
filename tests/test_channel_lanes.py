"""Preprocessing written channel by channel (issue 15): ``x[:, c]`` selections, stacks, in-place channel
assignment, and torchvision's ``transform_input`` re-normalisation, as PyTorch's legacy and dynamo exporters
write them. Each folds exactly, borders included, on random and real frames, with a one-channel stem for
gray; each form the fold cannot follow is refused with the node's name."""
from __future__ import annotations

import io

import numpy as np
import onnx
import pytest

from edgefold.errors import UnsupportedGraph, UsageError
from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder
from tests.models import F, assert_same, conv_weight
from tests.pages import photos

torch = pytest.importorskip("torch")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DYNAMO = pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])


class ChannelNet(torch.nn.Module):
    """Per-channel preprocessing in forward(), then a stem conv and a residual block."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pattern = pattern
        self.stem = torch.nn.Conv2d(3, 16, 7, 2, 3)
        self.block = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, 1, 1))

    def forward(self, x):  # noqa: ANN001, ANN201
        p = self.pattern
        x = x.float()
        if p == "transform_input":  # torchvision Inception v3 / GoogLeNet, verbatim
            x0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            x = torch.cat((x0, x1, x2), 1)
        elif p == "stack":
            x = torch.stack([(x[:, c] / 255 - MEAN[c]) / STD[c] for c in range(3)], 1)
        elif p == "stack_bgr":  # a camera's BGR frame reordered and normalised lane by lane
            x = torch.stack([(x[:, 2 - c] / 255 - MEAN[c]) / STD[c] for c in range(3)], 1)
        elif p == "unbind":
            r, g, b = x.unbind(1)
            x = torch.stack([(r / 255 - MEAN[0]) / STD[0], (g / 255 - MEAN[1]) / STD[1], (b / 255 - MEAN[2]) / STD[2]], 1)
        elif p == "empty_like":  # a new tensor filled channel by channel
            y = torch.empty_like(x)
            for c in range(3):
                y[:, c] = (x[:, c] / 255 - MEAN[c]) / STD[c]
            x = y
        elif p == "inplace":
            x = x.clone()
            for c in range(3):
                x[:, c] = (x[:, c] / 255 - MEAN[c]) / STD[c]
        elif p == "inplace_repeat":  # a gray frame repeated, then normalised channel by channel in place
            x = x.repeat(1, 3, 1, 1)
            for c in range(3):
                x[:, c] = (x[:, c] / 255 - MEAN[c]) / STD[c]
        y = self.stem(x)
        return y + self.block(y)


def export(net, channels: int, dynamo: bool, size=(48, 64), dynamic: bool = True) -> onnx.ModelProto:  # noqa: ANN001
    """Dynamic batch, H and W (or all static): the in-place forms build their indices from these sizes."""
    x = torch.randint(0, 255, (2 if dynamic else 1, channels, *size)).float()
    f = io.BytesIO()
    if dynamo:
        shapes = ({0: torch.export.Dim("n", min=1, max=64), 2: torch.export.Dim("h", min=16),
                   3: torch.export.Dim("w", min=16)},) if dynamic else None
        torch.onnx.export(net, (x,), f, dynamo=True, opset_version=18, input_names=["image"], output_names=["out"],
                          dynamic_shapes=shapes)
    else:
        torch.onnx.export(net, (x,), f, dynamo=False, opset_version=13, input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}} if dynamic else None)
    return onnx.load_from_string(f.getvalue())


def stem_weight(model: onnx.ModelProto) -> np.ndarray:
    import json

    name = json.loads({p.key: p.value for p in model.metadata_props}["edgefold.folded_convs"])[0]
    return conv_weight(model, name)


def gray_frames(size: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(size[0])
    real = [p[None, None] for p in photos(size)[:3]]  # camera, coffee, chelsea from scikit-image
    return real + [rng.integers(0, 256, (1, 1, *size)).astype(np.uint8), np.zeros((1, 1, *size), np.uint8),
                   np.full((1, 1, *size), 255, np.uint8)]


@DYNAMO
@pytest.mark.parametrize("pattern", ["transform_input", "stack", "inplace", "stack_bgr", "unbind", "empty_like"])
def test_per_channel_forms_fold_exactly_for_a_gray_camera(pattern, dynamo):
    m = export(ChannelNet(pattern).eval(), 3, dynamo)
    folded, report = fold(m, FoldOptions(channels="gray"))
    assert report.verification.passed
    assert stem_weight(folded).shape == (16, 1, 7, 7)
    assert not {"ScatterND", "ScatterElements"} & {n.op_type for n in folded.graph.node}
    for size in ((48, 64), (37, 53)):
        for g in gray_frames(size):
            assert_same(m, folded, {"image": np.repeat(g, 3, axis=1).astype(np.float32)}, {"image": g.astype(np.float32)})
    batch = np.concatenate(gray_frames((37, 53))[:4]).astype(np.float32)  # four frames in one batch
    assert_same(m, folded, {"image": np.repeat(batch, 3, axis=1)}, {"image": batch})


@DYNAMO
def test_in_place_assignment_after_repeat_folds_without_flags(dynamo):
    m = export(ChannelNet("inplace_repeat").eval(), 1, dynamo)
    folded, report = fold(m)
    assert report.verification.passed
    assert stem_weight(folded).shape == (16, 1, 7, 7)
    kept = {n.op_type for n in folded.graph.node}
    assert not {"ScatterND", "ScatterElements", "Tile", "Range"} & kept, kept
    for size in ((48, 64), (37, 53)):
        for g in gray_frames(size):
            x = g.astype(np.float32)
            assert_same(m, folded, {"image": x}, {"image": x})


@DYNAMO
@pytest.mark.parametrize("pattern", ["stack", "inplace"])
def test_colour_frames_keep_three_channels_exactly(pattern, dynamo):
    from skimage import data

    m = export(ChannelNet(pattern).eval(), 3, dynamo)
    folded, _ = fold(m)
    assert stem_weight(folded).shape == (16, 3, 7, 7)
    for img in (data.astronaut(), data.coffee()):
        x = np.ascontiguousarray(img[:61, :83].transpose(2, 0, 1)[None]).astype(np.float32)
        assert_same(m, folded, {"image": x}, {"image": x})


def _with_stem_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier plus its first conv's output as a second graph output: the logits of a randomly
    initialised deep net say little, the stem's output shows every pixel of the fold."""
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    model.graph.output.append(onnx.helper.make_tensor_value_info(stem.output[0], onnx.TensorProto.FLOAT, None))
    return model


def torchvision_classifier(name: str, dynamo: bool) -> onnx.ModelProto:
    from tests.torchvision_models import classifier

    torch.manual_seed(0)
    net = classifier(name, aux_logits=False, transform_input=True, init_weights=False).eval()
    with torch.no_grad():  # activations of order 1 all the way to the logits
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            elif isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    return _with_stem_output(export(net, 3, dynamo, size=(107, 107), dynamic=False))


@DYNAMO
@pytest.mark.parametrize("name", ["inception_v3", "googlenet"])
def test_torchvision_transform_input_composes_with_declared_imagenet_normalisation(name, dynamo):
    """transform_input=True (the default with pretrained weights) expects ImageNet-normalised input and turns
    it into (x - 0.5) / 0.5 inside the graph. Declared with --compose, the fold removes both."""
    m = torchvision_classifier(name, dynamo)
    options = FoldOptions(channels="gray", mean=MEAN, std=STD, scale=255.0, compose=True)
    folded, report = fold(m, options)
    assert report.verification.passed
    assert stem_weight(folded).shape[1] == 1
    assert "--mean/--std composed" in report.to_text()
    mean, std = np.array(MEAN, np.float32)[:, None, None], np.array(STD, np.float32)[:, None, None]
    for g in gray_frames((107, 107)):
        normalised = ((np.repeat(g, 3, axis=1).astype(np.float32) / 255.0 - mean) / std).astype(np.float32)
        assert_same(m, folded, {"image": normalised}, {"image": g.astype(np.float32)})


def test_declared_normalisation_on_a_renormalising_graph_needs_compose():
    m = export(ChannelNet("transform_input").eval(), 3, dynamo=False)
    with pytest.raises(UsageError, match="--compose"):
        fold(m, FoldOptions(channels="gray", mean=MEAN, std=STD, scale=255.0))


# ---- refusals: each form that is not a per-pixel affine map of whole channels -------------------------
def _lane_model(tail: str) -> onnx.ModelProto:
    b = ModelBuilder(seed=3)
    x = b.op("Cast", [b.input("image", [1, 3, 12, 14], np.uint8)], to=F)
    lane = b.op("Gather", [x, b.const(np.array(0, np.int64))], axis=1, name="select0")
    one = b.const(np.array([1], np.int64))
    if tail == "lane_into_pool":
        y = b.op("MaxPool", [b.op("Unsqueeze", [lane, one])], kernel_shape=[1, 1])
        y = b.op("MaxPool", [lane], kernel_shape=[1], name="pool_lane")
        x = b.op("Concat", [b.op("Unsqueeze", [y, one]), x], axis=1)
        return b.model([b.conv(x, 4, 4)])
    if tail == "spatial_const":
        lane = b.op("Mul", [lane, b.const(np.linspace(0.5, 2, 14).astype(np.float32))], name="mul_columns")
        x = b.op("Concat", [b.op("Unsqueeze", [lane, one]), x], axis=1)
        return b.model([b.conv(x, 4, 4)])
    if tail == "partial_scatter":  # writes the left half of channel 0 only
        upd = b.op("Slice", [b.op("Unsqueeze", [lane, one]), b.const(np.array([0], np.int64)),
                             b.const(np.array([7], np.int64)), b.const(np.array([3], np.int64))])
        idx = b.const(np.zeros((1, 1, 12, 7), np.int64))
        x = b.op("ScatterElements", [x, idx, upd], axis=1, name="scatter_half")
        return b.model([b.conv(x, 3, 4)])
    if tail == "pixel_scatter":  # channel chosen per pixel
        idx = b.const(np.random.default_rng(0).integers(0, 3, (1, 1, 12, 14)).astype(np.int64))
        x = b.op("ScatterElements", [x, idx, b.op("Unsqueeze", [lane, one])], axis=1, name="scatter_mixed")
        return b.model([b.conv(x, 3, 4)])
    if tail == "element_scatter_nd":  # writes single pixels
        upd = b.op("Gather", [b.op("Reshape", [lane, b.const(np.array([-1], np.int64))], name="flatten_lane"),
                              b.const(np.array([0, 1], np.int64))])
        x = b.op("ScatterND", [x, b.const(np.array([[0, 0, 0, 0], [0, 0, 0, 1]], np.int64)), upd], name="poke")
        return b.model([b.conv(x, 3, 4)])
    if tail == "pixel_where":  # the condition reads pixel values
        cond = b.op("Greater", [x, b.const(np.float32(128))], name="threshold")
        x = b.op("Where", [cond, x, b.const(np.float32(0))])
        return b.model([b.conv(x, 3, 4)])
    if tail == "spatial_where":  # a mask image, not a per-channel choice
        mask = b.const(np.random.default_rng(1).integers(0, 2, (1, 3, 12, 14)).astype(bool))
        x = b.op("Where", [mask, x, b.op("Unsqueeze", [lane, one])], name="masked")
        return b.model([b.conv(x, 3, 4)])
    if tail == "reshape_pixels":  # the lane flattened and read back with its rows swapped with columns
        flat = b.op("Reshape", [lane, b.const(np.array([1, 1, 14, 12], np.int64))], name="reshape_lane")
        x = b.op("Transpose", [flat], perm=[0, 1, 3, 2])
        x = b.op("Concat", [x, x, x], axis=1)
        return b.model([b.conv(x, 3, 4)])
    if tail == "duplicate_channel":
        one_u = b.op("Unsqueeze", [lane, one])
        x = b.op("ScatterND", [x, b.const(np.array([[[0, 1], [0, 1]]], np.int64)),
                               b.op("Concat", [one_u, one_u], axis=1)], name="twice")
        return b.model([b.conv(x, 3, 4)])
    raise AssertionError(tail)


@pytest.mark.parametrize("tail, node, why", [
    ("lane_into_pool", "pool_lane", "one channel selected with a scalar index"),
    ("spatial_const", "mul_columns", "varies along axis 2 of a channel lane"),
    ("partial_scatter", "scatter_half", "scatters part of a channel"),
    ("pixel_scatter", "scatter_mixed", "different channels at different pixels"),
    ("element_scatter_nd", "flatten_lane", "moves pixels"),
    ("pixel_where", "threshold", "not a per-pixel affine op"),
    ("spatial_where", "masked", "varies across pixels"),
    ("reshape_pixels", "reshape_lane", "moves pixels"),
    ("duplicate_channel", "twice", "same channel twice"),
])
def test_channel_forms_that_are_not_affine_are_refused_by_node(tail, node, why):
    with pytest.raises(UnsupportedGraph) as err:
        fold(_lane_model(tail))
    assert f"'{node}'" in str(err.value) and why in str(err.value), err.value


def test_cli_compose_prints_the_composed_map_and_refuses_without_it(tmp_path, capsys):
    from edgefold.cli.main import main

    src = tmp_path / "inception_like.onnx"
    onnx.save(export(ChannelNet("transform_input").eval(), 3, dynamo=False), src)
    flags = ["--gray", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--scale", "255"]
    assert main(["fold", str(src), "-o", str(tmp_path / "a.onnx"), *flags]) == 2
    err = capsys.readouterr().err
    assert "--compose" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.onnx").exists()
    assert main(["fold", str(src), "-o", str(tmp_path / "b.onnx"), *flags, "--compose"]) == 0
    out = capsys.readouterr().out
    # (x / 255 - 0.485) / 0.229 * (0.229 / 0.5) + (0.485 - 0.5) / 0.5 = x / 127.5 - 1 on every channel
    assert "c0 = 0.007843*x - 1, c1 = 0.007843*x - 1, c2 = 0.007843*x - 1" in out, out
