"""INT8 accuracy of `edgefold build --int8` on a real text detector, against the anchors users have today.

PaddleOCR's PP-OCRv4 text detector (rapidocr-onnxruntime wheel, `./run test` downloads it) at 640x640,
gray camera frames. Calibration: 24 label/document pages drawn with Pillow + 6 text-free photos
(tests/pages.py). Held out (never seen by any calibrator or search): 12 more drawn pages with other seeds,
scikit-image's scanned `page` and `text`, and 5 other text-free photos. Reference: the original model at
fp32 on the normalised 3-channel frame. Text map = sigmoid > 0.3 (rapidocr's threshold).

Rows: the edgefold default (folded; strategies x calibrators measured, mixed-precision search), each forced
first-conv strategy x calibrator with INT8 everywhere (no search), and the anchors in the same run: the
*unfolded* model quantised by onnxruntime's quantize_static per-channel with TensorRT's settings (MinMax,
Percentile), and NVIDIA ModelOpt's ONNX PTQ where `modelopt` is installed.

    python bench/int8_accuracy.py [--quick]      (--quick: fewer frames, for a smoke run)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefold.backends.ort import session  # noqa: E402
from edgefold.core.metrics import map_agreement  # noqa: E402
from edgefold.deploy.pipeline import build  # noqa: E402
from edgefold.deploy.spec import BuildOptions, ShapeProfile  # noqa: E402
from edgefold.folding.options import FoldOptions  # noqa: E402
from edgefold.precision.mixed import int8_mac_share  # noqa: E402
from tests.pages import photos, scanned_pages, text_page, write_folder  # noqa: E402

SIZE = (640, 640)
THRESHOLD = 0.3
NORM = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), scale=255.0)


def detector(tmp: Path) -> Path:
    wheel = sorted((ROOT / ".cache" / "wheels").glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    if not wheel:
        raise SystemExit("run `./run test` once first: it downloads the rapidocr-onnxruntime wheel")
    with zipfile.ZipFile(wheel[0]) as z:
        (tmp / "det.onnx").write_bytes(z.read("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"))
    return tmp / "det.onnx"


def frames(quick: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(calibration, held-out with text, held-out text-free)."""
    n_cal, n_held = (8, 4) if quick else (24, 12)
    free = photos(SIZE)
    calib = []
    pages = iter(text_page(s, SIZE) for s in range(n_cal))
    free_cal = iter(free[:6])
    for i in range(n_cal + 6):
        calib.append(next(free_cal) if i % 5 == 2 and len(calib) < n_cal + 6 else next(pages, None))
    calib = [f for f in calib if f is not None]
    held_text = [text_page(1000 + s, SIZE) for s in range(n_held)] + scanned_pages(SIZE)
    return calib, held_text, free[6:]


def normalised(frame: np.ndarray) -> np.ndarray:
    x = np.repeat(frame[None, None].astype(np.float32), 3, axis=1) / 255.0
    return ((x - 0.5) / 0.5).astype(np.float32)


def maps(model, frames_: list[np.ndarray], raw: bool) -> list[np.ndarray]:  # noqa: ANN001
    s = session(model, optimize=True)
    name = s.get_inputs()[0].name
    return [s.run(None, {name: f[None, None] if raw else normalised(f)})[0] for f in frames_]


def judge(ref_text, got_text, ref_free, got_free) -> tuple[float, float, float]:  # noqa: ANN001
    """IoU on the held-out frames whose reference has text (as the build's floor counts it: at least 0.1 %
    of the pixels), false text on the text-free photos; the same rule for every row."""
    ious = [v for v in map_agreement(ref_text, got_text, THRESHOLD)[0] if v is not None]
    fps = [float(((g > THRESHOLD) & ~(r > THRESHOLD)).mean()) for r, g in zip(ref_free, got_free)]
    return float(np.mean(ious)), float(np.min(ious)), float(np.mean(fps))


def ort_anchor(det: Path, calib: list[np.ndarray], method: str, tmp: Path) -> onnx.ModelProto:
    """The unfolded model, quantised as a user would with onnxruntime (TensorRT-legal settings)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgefold.graph.shapes import specialise

    m = onnx.version_converter.convert_version(specialise(onnx.load(str(det)), SIZE), 13)
    src, dst = tmp / f"unfolded_{method}.onnx", tmp / f"unfolded_{method}.int8.onnx"
    onnx.save(m, str(src))
    it = iter(calib)

    class Reader:
        def get_next(self):  # noqa: ANN202
            f = next(it, None)
            return None if f is None else {"x": normalised(f)}

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "AddQDQPairToWeight": True,
             "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
             "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in m.graph.node})}
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],
                    calibrate_method={"minmax": CalibrationMethod.MinMax,
                                      "percentile": CalibrationMethod.Percentile}[method], extra_options=extra)
    return onnx.load(str(dst))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    calib, held_text, held_free = frames(args.quick)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgefold-bench-int8-") as t:
        tmp = Path(t)
        det = detector(tmp)
        write_folder(tmp / "calib", calib, "f")
        original = onnx.load(str(det))
        ref_text, ref_free = maps(original, held_text, raw=False), maps(original, held_free, raw=False)
        with_text = [v is not None for v in map_agreement(ref_text, ref_text, THRESHOLD)[0]]
        print(f"held-out frames with text in the fp32 map: {sum(with_text)} of {len(with_text)}", flush=True)

        def row(label: str, model: onnx.ModelProto, raw: bool, seconds: float, kept: int | str) -> None:
            iou, iou_min, fp = judge(ref_text, maps(model, held_text, raw), ref_free, maps(model, held_free, raw))
            share = int8_mac_share(model, SIZE)
            rows.append((label, f"{iou:.3f}", f"{iou_min:.3f}", f"{100 * fp:.2f}%",
                         "-" if share is None else f"{100 * share:.1f}%", str(kept), f"{seconds:.0f}"))
            print(" | ".join(rows[-1]), flush=True)

        fold = FoldOptions(channels="gray", input_dtype="uint8", **NORM)  # type: ignore[arg-type]
        shapes = (ShapeProfile.parse("x:1x1x640x640"),)
        variants = [("edgefold default (auto, search)", {})]
        for strategy in ("recentre", "float-first"):
            for method in ("percentile", "minmax", "entropy"):
                variants.append((f"edgefold {strategy}/{method}, INT8 everywhere",
                                 dict(int8_strategy=strategy, calib_method=method, mixed_precision=False,
                                      accept_accuracy_drop=True)))
        for i, (label, extra) in enumerate(variants):
            opts = BuildOptions(output=str(tmp / f"v{i}" / "det.engine"), precision="int8", calib=str(tmp / "calib"),
                                shapes=shapes, fold_options=fold, engine=False, **extra)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            result = build(str(det), opts)
            seconds = time.perf_counter() - t0
            kept = len(result.chosen.search.kept_float) if result.chosen.search else 0
            row(label + ("" if result.chosen.passed else " (below floor)"), result.chosen.model, True, seconds, kept)
        for method in ("minmax", "percentile"):
            t0 = time.perf_counter()
            q = ort_anchor(det, calib, method, tmp)
            row(f"unfolded, onnxruntime quantize_static {method}", q, False, time.perf_counter() - t0, 0)
        try:
            import modelopt.onnx.quantization  # noqa: F401
            print("ModelOpt is installed: its anchor is not wired in this script yet")
        except ImportError:
            rows.append(("unfolded, ModelOpt ONNX PTQ", "not installed (optional, pulls PyTorch + CuPy)",
                         "", "", "", "", ""))
    head = ("variant", "IoU mean", "IoU min", "false text", "INT8 MACs", "FP16 layers", "build s")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nheld out: {len(held_text)} text frames, {len(held_free)} text-free photos; calibration {len(calib)} frames")


if __name__ == "__main__":
    main()
