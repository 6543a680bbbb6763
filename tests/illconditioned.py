"""An ill-conditioned network as trained ones are: a MobileNetV3-like stack (hard-swish, squeeze-excite gates)
whose BatchNorm statistics are re-estimated on data, so its activations are scaled as a trained net's. Such a
network amplifies float32 rounding of its input by 1e-4 .. 1e-1 of max |output| on flat frames and noise, so
an exact fold differs from it by more than a fixed bound allows. Built with torch (seeded), exported with the
TorchScript exporter; the preprocessing (u8 gray -> RGB, /255, -mean, /std) is in the graph."""
from __future__ import annotations

import io

import numpy as np
import onnx

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _net(width: int, blocks: int, coefficients: int = 0):  # noqa: ANN202 - a torch module
    import torch
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, momentum=None)  # cumulative average: the statistics of every frame seen

    class SE(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, max(4, c // 4), 1), nn.Conv2d(max(4, c // 4), c, 1)

        def forward(self, x):  # noqa: ANN001, ANN201
            s = x.mean((2, 3), keepdim=True)
            return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))

    class Block(nn.Module):
        def __init__(self, c: int, stride: int) -> None:
            super().__init__()
            e = 3 * c
            self.body = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), bn(e), nn.ReLU6(),
                                      nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), bn(e), nn.ReLU6(),
                                      SE(e), nn.Conv2d(e, c, 1, bias=False), bn(c))
            self.stride = stride

        def forward(self, x):  # noqa: ANN001, ANN201
            y = self.body(x)
            return y if self.stride != 1 else x + y

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
            first = nn.Conv2d(coefficients, width, 1, bias=False) if coefficients else \
                nn.Conv2d(3, width, 3, 2, 1, bias=False)
            self.stem = nn.Sequential(first, bn(width), nn.Hardswish())
            self.blocks = nn.Sequential(*[Block(width, 2 if i % 2 else 1) for i in range(blocks)])
            self.head = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Hardswish(), SE(2 * width),
                                      nn.Conv2d(2 * width, 2, 1, bias=False), bn(2))

        def forward(self, x):  # noqa: ANN001, ANN201
            if coefficients:  # a DCT-domain model: its input is already linear in the pixels
                return self.head(self.blocks(self.stem(x)))
            x = (x.float().expand(-1, 3, -1, -1) / 255.0 - self.mean) / self.std
            return self.head(self.blocks(self.stem(x)))

    return Net()


def _trained(net, batches):  # noqa: ANN001, ANN202 - torch modules
    """``net`` with symmetric zero-mean depthwise filters (learned ones respond to texture, not to flat or
    linearly lit areas) and BatchNorm statistics re-estimated on ``batches`` (tensors), in eval mode."""
    import torch

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
                k = m.weight
                k += k.flip(2).clone()
                k += k.flip(3).clone()
                k -= k.mean((2, 3), keepdim=True)
        net.train()
        for batch in batches:
            net(batch)
    net.eval()
    return net


def _photos(h: int, w: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Smooth u8 "photos" (8, 1, h, w): gently lit gradients."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(4):
        a, b, c = rng.random((3, 8, 1, 1, 1))
        out.append(np.round(100 + 10 * a + 4 * b * xx + 4 * c * yy).astype(np.uint8))
    return out


def _export(net, x, name: str) -> onnx.ModelProto:  # noqa: ANN001
    import torch

    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, input_names=[name], output_names=["logits"], opset_version=17, dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def illconditioned_model(h: int = 64, w: int = 64, width: int = 8, blocks: int = 12, seed: int = 0,
                         channels: int = 1) -> onnx.ModelProto:
    """The network on u8 ``channels``-channel input (1: gray replicated to RGB in the graph; 3: RGB)."""
    import torch

    torch.manual_seed(seed)
    net = _trained(_net(width, blocks), [torch.from_numpy(p) for p in _photos(h, w, np.random.default_rng(seed))])
    return _export(net, torch.zeros((1, channels, h, w), dtype=torch.uint8), "image")


def illconditioned_dct_model(h8: int = 12, w8: int = 16, coefficients: int = 10, width: int = 8, blocks: int = 12,
                             seed: int = 0) -> onnx.ModelProto:
    """The same network in the DCT domain (input ``coef``: the ``coefficients`` lowest zig-zag 8x8 DCT
    coefficients of a gray frame, N x C x h8 x w8), its first layer a 1x1 conv that ``frontend dct`` merges."""
    import torch

    from edgefold.frontend.dct import DctSpec

    torch.manual_seed(seed)
    wt, bias = DctSpec(select_low=coefficients).weights()
    dct = [torch.nn.functional.conv2d(torch.from_numpy(p).float(), torch.from_numpy(wt).float(),
                                      torch.from_numpy(bias).float(), stride=8)
           for p in _photos(8 * h8, 8 * w8, np.random.default_rng(seed))]
    net = _trained(_net(width, blocks, coefficients), dct)
    return _export(net, torch.zeros((1, coefficients, h8, w8)), "coef")
