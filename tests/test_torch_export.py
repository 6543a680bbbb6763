"""Graphs as PyTorch's exporters write them (TorchScript-based legacy exporter and the dynamo exporter):
every way people put gray->RGB and normalisation into forward(), folded exactly. ``./run test`` installs
the CPU build of torch 2.13.0 that lies on this machine's disk."""
from __future__ import annotations

import io
import math

import numpy as np
import onnx
import pytest

from edgefold.folding import FoldOptions, fold
from tests.models import assert_same, conv_weight

torch = pytest.importorskip("torch")

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class Net(torch.nn.Module):
    """Preprocessing in forward(), then a ResNet-style stem and a residual block."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pattern = pattern
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = torch.nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn = torch.nn.BatchNorm2d(16)
        self.block = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, 1, 1))
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):  # noqa: ANN001, ANN201
        p = self.pattern
        if p == "expand":
            x = x.float().expand(-1, 3, -1, -1)
        elif p == "repeat":
            x = x.float().repeat(1, 3, 1, 1)
        elif p == "cat":
            x = torch.cat([x, x, x], 1).float()
        elif p == "broadcast":
            x = x.float()
        elif p == "bgr_index":
            x = x.float()[:, [2, 1, 0]]
        elif p == "bgr_flip":
            x = x.float().flip(1)
        elif p == "nhwc":
            x = x.float().permute(0, 3, 1, 2)
        x = (x / 255.0 - self.mean) / self.std
        y = torch.relu(self.bn(self.stem(x)))
        return torch.relu(y + self.block(y))


def export(pattern: str, dynamo: bool, channels: int = 1, nhwc: bool = False) -> onnx.ModelProto:
    net = Net(pattern).eval()
    shape = (1, 48, 64, channels) if nhwc else (1, channels, 48, 64)
    x = torch.randint(0, 255, shape, dtype=torch.uint8)
    f = io.BytesIO()
    h, w = (1, 2) if nhwc else (2, 3)
    if dynamo:
        torch.onnx.export(net, (x,), f, dynamo=True, opset_version=18, input_names=["image"], output_names=["out"],
                          dynamic_shapes=({h: torch.export.Dim("h", min=16), w: torch.export.Dim("w", min=16)},))
    else:
        torch.onnx.export(net, (x,), f, dynamo=False, opset_version=13, input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {h: "h", w: "w"}})
    return onnx.load_from_string(f.getvalue())


def export_gray(net, dynamo: bool, smallest: int = 16) -> onnx.ModelProto:  # noqa: ANN001
    """A module taking a 1 x 1 x H x W uint8 frame ("image"), exported with dynamic H and W."""
    x = torch.randint(0, 255, (1, 1, 48, 64), dtype=torch.uint8)
    f = io.BytesIO()
    if dynamo:
        dims = {2: torch.export.Dim("h", min=smallest), 3: torch.export.Dim("w", min=smallest)}
        torch.onnx.export(net, (x,), f, dynamo=True, opset_version=18, input_names=["image"], dynamic_shapes=(dims,))
    else:
        torch.onnx.export(net, (x,), f, dynamo=False, opset_version=13, input_names=["image"],
                          dynamic_axes={"image": {2: "h", 3: "w"}})
    return onnx.load_from_string(f.getvalue())


def _stem(model: onnx.ModelProto) -> str:
    import json

    return json.loads({p.key: p.value for p in model.metadata_props}["edgefold.folded_convs"])[0]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("pattern", ["expand", "repeat", "cat", "broadcast"])
def test_gray_patterns_from_pytorch_exporters(pattern, dynamo):
    m = export(pattern, dynamo)
    folded, report = fold(m)
    assert report.verification.passed
    assert conv_weight(folded, _stem(folded)).shape == (16, 1, 7, 7)
    for h, w in ((48, 64), (37, 53)):
        x = np.random.default_rng(h).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
        assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("pattern", ["bgr_index", "bgr_flip"])
def test_channel_flips_from_pytorch_exporters(pattern, dynamo):
    m = export(pattern, dynamo, channels=3)
    folded, _ = fold(m)
    x = np.random.default_rng(0).integers(0, 256, (1, 3, 48, 64)).astype(np.uint8)
    assert_same(m, folded, {"image": x}, {"image": x})
    gray, _ = fold(m, FoldOptions(channels="gray"))
    assert conv_weight(gray, _stem(gray)).shape == (16, 1, 7, 7)
    g = x[:, :1]
    assert_same(m, gray, {"image": np.repeat(g, 3, axis=1)}, {"image": g})


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_nhwc_input_from_pytorch_exporters(dynamo):
    m = export("nhwc", dynamo, channels=3, nhwc=True)
    folded, report = fold(m, FoldOptions(channels="gray"))
    assert report.plan.chains[0].contract.layout == "NHWC"
    g = np.random.default_rng(1).integers(0, 256, (1, 48, 64, 1)).astype(np.uint8)
    assert_same(m, folded, {"image": np.repeat(g, 3, axis=3)}, {"image": g})


class SegNet(torch.nn.Module):
    """A defect-segmentation net: normalisation in forward(), output resized to the input's own size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = (x.float().expand(-1, 3, -1, -1) / 255.0 - self.mean) / self.std
        y = self.head(torch.relu(self.stem(x)))
        return torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_segmentation_net_that_reads_the_input_shape(dynamo):
    net = SegNet().eval()
    m = export_gray(net, dynamo)
    folded, report = fold(m)
    assert conv_weight(folded, _stem(folded)).shape == (8, 1, 3, 3)
    for h, w in ((48, 64), (37, 53)):
        frame = np.random.default_rng(h).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
        assert_same(m, folded, {"image": frame}, {"image": frame})


# ---- TF-style "same" padding computed from the input's size (timm's Conv2dSame / pad_same) -------------------
def _same_padding(x, k: int, s: int, d: int):  # noqa: ANN001, ANN202 - timm.layers.padding.get_same_padding, verbatim
    if isinstance(x, torch.Tensor):
        return torch.clamp(((x / s).ceil() - 1) * s + (k - 1) * d + 1 - x, min=0)
    return max((math.ceil(x / s) - 1) * s + (k - 1) * d + 1 - x, 0)


def _pad_same(x, k, s, d):  # noqa: ANN001, ANN202 - timm.layers.padding.pad_same
    ih, iw = x.size()[-2:]
    pad_h, pad_w = _same_padding(ih, k[0], s[0], d[0]), _same_padding(iw, k[1], s[1], d[1])
    return torch.nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0)


class Conv2dSame(torch.nn.Conv2d):
    """timm.layers.conv2d_same.Conv2dSame: TensorFlow's "SAME" padding, computed from the input at run time."""

    def forward(self, x):  # noqa: ANN001, ANN201
        x = _pad_same(x, self.kernel_size, self.stride, self.dilation)
        return torch.nn.functional.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


class SameNet(torch.nn.Module):
    """An EfficientNet-style stem (TF weights ported by timm): normalisation in forward(), Conv2dSame."""

    def __init__(self, k: int = 3, s: int = 2) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = Conv2dSame(3, 8, k, s)
        self.head = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = (x.float().expand(-1, 3, -1, -1) / 255.0 - self.mean) / self.std
        return self.head(torch.nn.functional.silu(self.stem(x)))


def export_same(dynamo: bool, k: int = 3, s: int = 2) -> onnx.ModelProto:
    return export_gray(SameNet(k, s).eval(), dynamo, smallest=2)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("k,s", [(3, 2), (5, 1)])
def test_same_padding_computed_from_the_input_size(k, s, dynamo):
    m = export_same(dynamo, k, s)
    assert "Pad" in [n.op_type for n in m.graph.node] or (dynamo and s == 1)  # dynamo: constant when s = 1
    folded, report = fold(m)
    assert report.verification.passed and report.exact
    assert "Pad" not in [n.op_type for n in folded.graph.node]  # merged into the stem as auto_pad SAME
    assert conv_weight(folded, _stem(folded)).shape == (8, 1, k, k)
    for h, w in ((48, 64), (37, 53), (16, 17), (5, 3)):
        x = np.random.default_rng(h).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
        assert_same(m, folded, {"image": x}, {"image": x})


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_same_padding_with_a_fixed_input_size_becomes_constant(dynamo):
    m = export_same(dynamo)
    folded, report = fold(m, FoldOptions(input_size=(37, 53)))
    assert report.verification.passed
    assert {"Pad", "Shape"}.isdisjoint(n.op_type for n in folded.graph.node)
    x = np.random.default_rng(0).integers(0, 256, (1, 1, 37, 53)).astype(np.uint8)
    assert_same(m, folded, {"image": x}, {"image": x})


class ResizeNet(torch.nn.Module):
    """Normalisation, then the frame resized before the stem: to a fixed size or to half its own size."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.how = how
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.stem = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.head = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = (x.float().expand(-1, 3, -1, -1) / 255.0 - self.mean) / self.std
        size = (40, 56) if self.how == "fixed" else (x.shape[2] // 2, x.shape[3] // 2)
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.head(torch.relu(self.stem(x)))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("how", ["fixed", "half"])
def test_resize_to_a_size_computed_in_forward(how, dynamo):
    net = ResizeNet(how).eval()
    m = export_gray(net, dynamo)
    folded, report = fold(m)
    assert report.verification.passed
    assert conv_weight(folded, _stem(folded)).shape == (8, 1, 3, 3)
    for h, w in ((48, 64), (37, 53), (33, 17)):
        frame = np.random.default_rng(h).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
        assert_same(m, folded, {"image": frame}, {"image": frame})
