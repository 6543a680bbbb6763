"""A real pretrained network: PaddleOCR's PP-OCRv4 text detector, shipped inside the rapidocr-onnxruntime
wheel (paddle2onnx export: every weight a Constant node, opset 12, dynamic N/H/W), on a real scanned page
from scikit-image. ``./run test`` downloads the wheel (PyPI, no dependencies) before the tests run."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from skimage import data

from edgefold.folding import FoldOptions, fold
from tests.models import RAPIDOCR, run, wheel_model

DET = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
# rapidocr's det config: pixels / 255, mean 0.5, std 0.5 per channel, RGB
NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), scale=255.0)


@pytest.fixture(scope="module")
def detector() -> onnx.ModelProto:
    return wheel_model(RAPIDOCR, DET)


def _page() -> np.ndarray:
    page = data.page()  # 191 x 384 uint8 scanned text
    return np.pad(page, ((0, 192 - page.shape[0]), (0, 0)), mode="edge")  # the detector wants multiples of 32


def _maps(detector, folded, page):
    rgb = np.repeat(page[None, None].astype(np.float32), 3, axis=1)
    ref = run(detector, {"x": ((rgb / 255 - 0.5) / 0.5).astype(np.float32)})[0]
    got = run(folded, {"x": page[None, None]})[0]
    return ref, got


def _iou(a: np.ndarray, b: np.ndarray, threshold: float = 0.3) -> float:
    a, b = a > threshold, b > threshold
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_pp_ocr_detector_folds_exactly_on_a_real_page(detector):
    folded, report = fold(detector, FoldOptions(channels="gray", input_dtype="uint8", **NORM))
    conv = report.convs[0][0]
    assert conv.old_weight_shape == (16, 3, 3, 3) and conv.new_weight_shape == (16, 1, 3, 3)
    assert report.verification.passed
    ref, got = _maps(detector, folded, _page())
    assert (ref > 0.3).sum() > 1000  # the page really contains text the detector finds
    assert np.abs(ref - got).max() <= 1e-4 * np.abs(ref).max()
    assert _iou(ref, got) == 1.0


def test_pp_ocr_naive_fold_is_visibly_wrong_and_reported(detector):
    """The border error of an interior-only fold is of the size of the activations on this model."""
    folded, report = fold(detector, FoldOptions(channels="gray", input_dtype="uint8", border="approx", **NORM))
    assert not report.exact
    ref, got = _maps(detector, folded, _page())
    rel = np.abs(ref - got).max() / np.abs(ref).max()
    assert rel > 0.05, rel
    assert report.verification.worst.max_rel > 0.05


def test_folding_does_not_make_int8_worse_on_the_real_detector(detector):
    """A fold must not cost INT8 accuracy. The detector quantised unfolded (normalised frames)
    and folded (both first-conv strategies), same onnxruntime Q/DQ settings, calibrated on scikit-image
    photos; text-map IoU against fp32 on the held-out scanned page."""
    from PIL import Image

    from edgefold.core.frames import InputFeed
    from edgefold.deploy.strategies import upgrade_opset as _upgrade_opset
    from edgefold.folding.verify import chain_feeds
    from edgefold.graph.shapes import specialise
    from edgefold.precision.int8 import quantize

    size = 256
    frames = []
    for name in ("text", "camera", "coins", "moon", "brick", "gravel", "grass", "cell", "horse", "rocket"):
        a = getattr(data, name)()
        a = (a * 255).astype(np.uint8) if a.dtype != np.uint8 else a
        frames.append(np.asarray(Image.fromarray(a).convert("L").resize((size, size)), np.float64)[None])
    page = np.asarray(Image.fromarray(data.page()).resize((size, size)), np.float64)[None]
    original = specialise(detector, (size, size))
    options = dict(channels="gray", input_dtype="uint8", **NORM)
    fp32, report = fold(original, FoldOptions(**options))
    _, feed = chain_feeds(report.plan.chains[0])
    ref = run(fp32, {feed.name: feed.tensor(page)})[0]
    unfolded_feed = InputFeed("x", "float32", (1, 3, size, size), 1, report.plan.chains[0].input_affine)
    plain = onnx.ModelProto()
    plain.CopyFrom(original)
    plain = _upgrade_opset(plain, unfolded_feed, frames)
    unfolded = run(quantize(plain, unfolded_feed, frames, "float-first"), {"x": unfolded_feed.tensor(page)})[0]
    ious = {}
    for strategy, offset in (("float-first", 0.0), ("recentre", -128.0)):
        folded, _ = fold(original, FoldOptions(raw_offset=offset, **options))
        q = quantize(_upgrade_opset(folded, feed, frames), feed, frames, strategy)
        ious[strategy] = _iou(ref, run(q, {feed.name: feed.tensor(page)})[0])
    base = _iou(ref, unfolded)
    assert base > 0.8
    assert max(ious.values()) >= base - 0.02, (base, ious)


@pytest.mark.parametrize("member, sizes", [
    ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", ((48, 320), (48, 160))),  # SVTR: height 48
    ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", None),
])
def test_pp_ocr_recogniser_and_classifier_fold_exactly(member, sizes):
    """The other two networks of the OCR pipeline: the same decisions on a real text line."""
    from PIL import Image

    model = wheel_model(RAPIDOCR, member)
    folded, report = fold(model, FoldOptions(channels="gray", input_dtype="uint8", verify_sizes=sizes, **NORM))
    assert report.verification.passed and report.convs[0][0].new_weight_shape[1] == 1
    line = np.asarray(Image.fromarray(data.text()[:60, 40:380]).resize((320 if sizes else 192, 48)), np.uint8)
    rgb = np.repeat(line[None, None].astype(np.float32), 3, axis=1)
    name = model.graph.input[0].name
    ref = run(model, {name: ((rgb / 255 - 0.5) / 0.5).astype(np.float32)})[0]
    got = run(folded, {name: line[None, None]})[0]
    assert np.abs(ref - got).max() <= 1e-4 * np.abs(ref).max()
    assert np.array_equal(ref.argmax(axis=-1), got.argmax(axis=-1))  # same characters / same orientation
