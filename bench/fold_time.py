"""Time of ``edgefold fold`` (plan + apply + onnxruntime self-check) on a ResNet-50-size model (25.5 M
parameters, built in code) with gray preprocessing in its graph. Target: <= 3 s on this machine."""
from __future__ import annotations

import statistics
import time

import numpy as np
import onnx

from edgefold.fold import fold
from edgefold.graph.build import ModelBuilder, gray_normalise


def resnet50(h: int = 224, w: int = 224) -> onnx.ModelProto:
    b = ModelBuilder(seed=0)
    x = b.input("image", [1, 1, h, w], np.uint8)
    y = b.op("Relu", [b.conv(gray_normalise(b, x), 3, 64, k=7, stride=2, name="stem")])
    y = b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for mid, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            s = stride if i == 0 else 1
            r = b.op("Relu", [b.conv(y, cin, mid, k=1, pad=0)])
            r = b.op("Relu", [b.conv(r, mid, mid, k=3, stride=s)])
            r = b.conv(r, mid, mid * 4, k=1, pad=0)
            shortcut = b.conv(y, cin, mid * 4, k=1, stride=s, pad=0) if i == 0 else y
            y = b.op("Relu", [b.op("Add", [r, shortcut])])
            cin = mid * 4
    g = b.op("Flatten", [b.op("GlobalAveragePool", [y])])
    fc = (b.rng.standard_normal((2048, 1000)) / 45).astype(np.float32)
    return b.model([b.op("Gemm", [g, b.const(fc), b.const(np.zeros(1000, np.float32))])])


def main() -> None:
    model = resnet50()
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _, report = fold(model)
        times.append(time.perf_counter() - t0)
    print(f"ResNet-50-size model, {params / 1e6:.1f} M params: fold + verify median {statistics.median(times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times)}); {report.verification.frames} frames checked; target <= 3 s")


if __name__ == "__main__":
    main()
