"""Engines for the `edgefold run` tests: a bare 3-channel network (ImageNet normalisation declared by flags, not in
its graph) folded for a camera format, and what today's pipeline feeds the original - OpenCV's conversion of the
same raw buffer, then the normalisation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgefold.cli.main import main
from edgefold.graph.builder import IMAGENET_MEAN, IMAGENET_STD, ModelBuilder
from tests.models import NORM_FLAGS, run

H, W = 48, 64
# OpenCV names a Bayer pattern by the 2x2 block starting at row 1, column 1 (PFNC BayerRG8 = COLOR_BayerBG2RGB)
OPENCV_BAYER = {"BayerRG8": "COLOR_BayerBG2RGB", "BayerBG8": "COLOR_BayerRG2RGB", "BayerGR8": "COLOR_BayerGB2RGB",
                "BayerGB8": "COLOR_BayerGR2RGB"}


def bare_model(h: int = H, w: int = W, seed: int = 3, batch: int | str = 1, dense: bool = False) -> onnx.ModelProto:
    """Stem conv, ReLU, conv, then a classifier head (global pool) or a one-channel map (``dense``)."""
    b = ModelBuilder(seed=seed)
    x = b.input("image", [batch, 3, h, w])
    y = b.op("Relu", [b.conv(x, 3, 8, k=3, stride=2, pad=1, name="stem")])
    if dense:
        return b.model([b.conv(y, 8, 1, k=3)])
    return b.model([b.op("Flatten", [b.op("GlobalAveragePool", [b.conv(y, 8, 10, k=3)])])])


def fold_for(fmt: str, folder: Path, original: onnx.ModelProto | None = None) -> tuple[Path, onnx.ModelProto]:
    """(the folded model's path, the original) for camera format ``fmt``."""
    original = original or bare_model()
    src, out = folder / f"bare_{fmt}.onnx", folder / f"{fmt}.onnx"
    onnx.save(original, str(src))
    assert main(["fold", str(src), "-o", str(out), "-q", "--pixel-format", fmt, *NORM_FLAGS]) == 0
    return out, original


def todays_input(raw: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(OpenCV's 8-bit RGB conversion, the exact conversion in float), both 1 x 3 x H x W in pixel units."""
    import cv2

    from edgefold.core.contract import pixel_format

    pf = pixel_format(fmt)
    if pf.mosaic:
        ocv = cv2.cvtColor(raw, getattr(cv2, OPENCV_BAYER[fmt]))
    elif pf.bits > 8:
        ocv = cv2.cvtColor(cv2.convertScaleAbs(raw, alpha=pf.scale), cv2.COLOR_GRAY2RGB)
    else:
        ocv = cv2.cvtColor(raw, cv2.COLOR_GRAY2RGB)
    exact = pf.reference(raw[None].astype(np.float64), 3)
    return ocv.transpose(2, 0, 1)[None].astype(np.float64), exact[None]


def original_on(original: onnx.ModelProto, pixels: np.ndarray) -> np.ndarray:
    x = (pixels / 255.0 - IMAGENET_MEAN.reshape(1, 3, 1, 1)) / IMAGENET_STD.reshape(1, 3, 1, 1)
    return run(original, {"image": x.astype(np.float32)})[0]


def check_recorded(raw: np.ndarray, outputs: dict[str, np.ndarray], folded: Path, original: onnx.ModelProto,
                   fmt: str) -> None:
    """A recorded frame's output is the folded model's on the recorded buffer, and the original's on OpenCV's
    conversion of that buffer within OpenCV's rounding (OpenCV equals the exact conversion to 0.5 of a level, and
    the folded model equals the original on the exact conversion)."""
    model = onnx.load(str(folded))
    contract_dtype = onnx.helper.tensor_dtype_to_np_dtype(model.graph.input[0].type.tensor_type.elem_type)
    got = list(outputs.values())[0]
    ours = run(model, {model.graph.input[0].name: raw[None, None].astype(contract_dtype)})[0]
    scale = np.abs(ours).max()
    assert np.abs(got - ours).max() <= 1e-5 * scale + 1e-6
    ocv, exact = todays_input(raw, fmt)
    assert np.abs(ocv - exact).max() <= 0.5 + 1e-9  # OpenCV's rounding, nothing else
    on_exact = original_on(original, exact)
    assert np.abs(got - on_exact).max() <= 1e-4 * np.abs(on_exact).max() + 1e-6
    today = original_on(original, ocv)
    assert np.abs(got - today).max() <= 0.05 * np.abs(today).max()
