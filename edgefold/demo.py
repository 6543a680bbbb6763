"""The embedded default: a small classifier + dense head with gray-camera preprocessing in its graph,
made deterministically in code, and a gray sample photo that ships with scikit-image."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.graph.builder import ModelBuilder, gray_normalise


def demo_model(seed: int = 0) -> onnx.ModelProto:
    """uint8 (1, 1, H, W) -> Cast, x3, /255, -mean, /std -> ResNet-style stem -> logits and a dense map."""
    b = ModelBuilder(opset=17, seed=seed)
    x = b.input("image", [1, 1, "height", "width"], np.uint8)
    n = gray_normalise(b, x)
    y = b.op("Relu", [b.conv(n, 3, 32, k=7, stride=2, name="stem_conv")])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    r = b.op("Relu", [b.conv(y, 32, 32, k=3)])
    y = b.op("Relu", [b.op("Add", [b.conv(r, 32, 32, k=3), y])])
    y = b.op("Relu", [b.conv(y, 32, 64, k=3, stride=2)])
    heat = b.op("Sigmoid", [b.conv(y, 64, 1, k=1, pad=0)], name="defect_map")
    g = b.op("Flatten", [b.op("GlobalAveragePool", [y])])
    w = (b.rng.standard_normal((64, 10)) / 8).astype(np.float32)
    logits = b.op("Gemm", [g, b.const(w, "fc_W"), b.const(np.zeros(10, np.float32), "fc_B")], name="logits")
    return b.model([logits, heat])


def sample_image() -> tuple[np.ndarray, str]:
    """A real gray photo (512x512 uint8) from scikit-image, or a synthetic one if it is not installed."""
    try:
        from skimage import data

        return data.camera(), "scikit-image data.camera()"
    except ImportError:
        yy, xx = np.mgrid[0:480, 0:640]
        return ((xx ^ yy) & 255).astype(np.uint8), "synthetic XOR pattern (pip install scikit-image for a photo)"
