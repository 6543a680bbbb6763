"""INT8 accuracy of `edgefold build --int8` on real networks, against the anchors users have today.

Three networks from PyPI wheels (`./run test` downloads them), each with its own table (--models):

``det``  PaddleOCR's PP-OCRv4 text detector, described below.
``cls``  PaddleOCR's text-direction classifier (ch_ppocr_mobile_v2.0_cls, rapidocr-onnxruntime wheel) at
         48x192: text lines drawn with Pillow's scalable built-in font, upright or rotated 180 degrees.
         Calibration 150 lines; held out 200 lines with other seeds. Metric: top-1 agreement with fp32
         (the build's floor: >= 98 %, on its own frames both as seen and as estimated from the margins).
``yolo`` Ultralytics YOLOv8n (nudenet wheel, 18 classes) at 320x320, x/255: scikit-image photos in gray,
         each whole, mirrored, and 2x zooms on its centre and quadrants; plus frames of 4x4 real faces from
         scikit-image's LFW subset. Calibration: 7 photos without people and faces 0-47; held out: 7 other
         photos, people among them, and faces 52-99. Metrics: raw-head cosine (the build's floor: >= 0.99 per frame)
         and mAP@0.5 after NMS (IoU 0.45) of the INT8 boxes (score >= 0.01, as mAP evaluation does) against
         the fp32 boxes (score >= 0.25) as ground truth.

PaddleOCR's PP-OCRv4 text detector (rapidocr-onnxruntime wheel, `./run test` downloads it) at 640x640,
gray camera frames. Calibration: 24 label/document pages drawn with Pillow + 6 text-free photos
(tests/pages.py). Held out (never seen by any calibrator or search): 12 more drawn pages with other seeds,
scikit-image's scanned `page` and `text`, and 5 other text-free photos. Reference: the original model at
fp32 on the normalised 3-channel frame. Text map = sigmoid > 0.3 (rapidocr's threshold).

Rows: the edgefold default (folded; strategies x calibrators measured, mixed-precision search), each forced
first-conv strategy x calibrator with INT8 everywhere (no search), and the anchors in the same run: the
*unfolded* model quantised by onnxruntime's quantize_static per-channel with TensorRT's settings (MinMax,
Percentile), and NVIDIA ModelOpt's ONNX PTQ where `modelopt` is installed.

    python bench/int8_accuracy.py [--quick] [--models det,cls,yolo]      (--quick: fewer frames, a smoke run)
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


def ort_anchor(model_path: Path, calib: list[np.ndarray], method: str, tmp: Path, size: tuple[int, int] = SIZE,
               feed=None) -> onnx.ModelProto:  # noqa: ANN001
    """The unfolded model, quantised as a user would with onnxruntime (TensorRT-legal settings)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgefold.graph.shapes import specialise

    feed = feed or normalised
    m = specialise(onnx.load(str(model_path)), size)
    if max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:  # per-channel Q/DQ needs 13
        m = onnx.version_converter.convert_version(m, 13)
    name = m.graph.input[0].name
    src, dst = tmp / f"unfolded_{method}.onnx", tmp / f"unfolded_{method}.int8.onnx"
    onnx.save(m, str(src))
    it = iter(calib)

    class Reader:
        def get_next(self):  # noqa: ANN202
            f = next(it, None)
            return None if f is None else {name: feed(f)}

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False, "AddQDQPairToWeight": True,
             "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
             "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in m.graph.node})}
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "ConvTranspose", "Gemm", "MatMul"],
                    calibrate_method={"minmax": CalibrationMethod.MinMax,
                                      "percentile": CalibrationMethod.Percentile}[method], extra_options=extra)
    return onnx.load(str(dst))


def mac_share(model: onnx.ModelProto, size: tuple[int, int]) -> str:
    """int8_mac_share as a table cell ("-" where a MAC count is unknown)."""
    share = int8_mac_share(model, size)
    return f"{100 * share:.1f}%" if share is not None else "-"


def wheel_member(tmp: Path, pattern: str, member: str) -> Path:
    wheel = sorted((ROOT / ".cache" / "wheels").glob(pattern))
    if not wheel:
        raise SystemExit(f"run `./run test` once first: it downloads {pattern}")
    with zipfile.ZipFile(wheel[0]) as z:
        (tmp / Path(member).name).write_bytes(z.read(member))
    return tmp / Path(member).name


def outputs(model, frames_: list[np.ndarray], feed) -> list[np.ndarray]:  # noqa: ANN001
    s = session(model, optimize=True)
    name = s.get_inputs()[0].name
    return [s.run(None, {name: feed(f)})[0] for f in frames_]


def default_and_anchors(row, model_path: Path, calib: list[np.ndarray], tmp: Path, fold: FoldOptions, shape: str,
                        feed) -> None:  # noqa: ANN001
    """The rows every network gets: `edgefold build --int8` with its defaults (strategies x calibrators
    measured, mixed-precision search) on the folded model, fed raw frames, and the unfolded model quantised by
    onnxruntime's quantize_static (MinMax, Percentile), fed ``feed(frame)``."""
    profile = ShapeProfile.parse(shape)
    write_folder(tmp / "calib", calib, "f")
    opts = BuildOptions(output=str(tmp / "default" / "m.engine"), precision="int8", calib=str(tmp / "calib"),
                        shapes=(profile,), fold_options=fold, engine=False)
    t0 = time.perf_counter()
    result = build(str(model_path), opts)
    kept = len(result.chosen.search.kept_float) if result.chosen.search else 0
    for part, stats in (("calibration", result.chosen.on_calibration), ("held out", result.chosen.on_held_out)):
        print(f"the build's verdict on its {part} frames: " + "; ".join(f"{s.name} {s.decided_by}" for s in stats))
    row("edgefold default (auto, search)" + ("" if result.chosen.passed else " (below floor)"), result.chosen.model,
        lambda f: f[None, None], time.perf_counter() - t0, kept)
    for method in ("minmax", "percentile"):
        t0 = time.perf_counter()
        q = ort_anchor(model_path, calib, method, tmp, profile.opt[-2:], feed=feed)  # type: ignore[arg-type]
        row(f"unfolded, onnxruntime quantize_static {method}", q, feed, time.perf_counter() - t0, 0)


def print_table(title: str, head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(f"\n{title}\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


CLS_SIZE = (48, 192)
CLS_CALIB = 150  # lines; the build holds out every fifth (30 lines) and judges its floor on both parts


def text_line(seed: int, flipped: bool) -> np.ndarray:
    """One text line as rapidocr's classifier sees it (48x192, dark on light), upright or rotated 180."""
    from PIL import Image, ImageDraw, ImageFont

    from tests.pages import WORDS

    rng = np.random.default_rng(seed)
    h, w = CLS_SIZE
    font_px = int(rng.integers(20, 36))
    font = ImageFont.load_default(size=font_px)
    words = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 5))))
    back = float(rng.uniform(170, 250))
    img = Image.new("L", (w, h), int(back))
    ImageDraw.Draw(img).text((int(rng.integers(0, 24)), int(rng.integers(0, max(1, h - font_px - 4)))), words,
                             fill=int(rng.integers(0, 80)), font=font)
    a = np.asarray(img, np.float32) + rng.normal(0, float(rng.uniform(0, 8)), (h, w))
    a = np.clip(a, 0, 255).astype(np.uint8)
    return a[::-1, ::-1].copy() if flipped else a


def classifier_rows(quick: bool, tmp: Path) -> None:
    n_cal, n_held = (12, 40) if quick else (CLS_CALIB, 200)
    calib = [text_line(s, s % 2 == 1) for s in range(n_cal)]
    held = [text_line(5000 + s, s % 2 == 1) for s in range(n_held)]
    cls = wheel_member(tmp, "rapidocr_onnxruntime-1.4.4-*.whl",
                       "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
    ref = np.array([o.argmax() for o in outputs(onnx.load(str(cls)), held, normalised)])
    truth = np.array([s % 2 for s in range(n_held)])  # the classifier's labels: 0 upright, 1 rotated 180
    print(f"classifier: fp32 direction accuracy on the drawn lines {100 * (ref == truth).mean():.1f}%", flush=True)
    rows = []

    def row(label: str, model: onnx.ModelProto, feed, seconds: float, kept: int | str) -> None:  # noqa: ANN001
        got = np.array([o.argmax() for o in outputs(model, held, feed)])
        share = mac_share(model, CLS_SIZE)
        rows.append((label, f"{100 * (got == ref).mean():.1f}%", f"{100 * (got == truth).mean():.1f}%",
                     share, str(kept), f"{seconds:.0f}"))
        print(" | ".join(rows[-1]), flush=True)

    fold = FoldOptions(channels="gray", input_dtype="uint8", **NORM)  # type: ignore[arg-type]
    default_and_anchors(row, cls, calib, tmp, fold, "x:1x1x48x192", normalised)
    print_table(f"text-direction classifier, {len(held)} held-out lines, {len(calib)} calibration",
                ("variant", "top-1 = fp32", "direction right", "INT8 MACs", "FP16 layers", "build s"), rows)


YOLO_SIZE = (320, 320)
YOLO_CALIB = ("moon", "brick", "grass", "gravel", "immunohistochemistry", "colorwheel", "rocket")
YOLO_HELD = ("astronaut", "camera", "chelsea", "coffee", "coins", "stereo_motorcycle", "hubble_deep_field")


def yolo_frames(names: tuple[str, ...]) -> list[np.ndarray]:
    from skimage import data

    from tests.pages import _fit, _gray

    out = []
    for name in names:
        img = getattr(data, name)()
        img = _gray(img[0] if isinstance(img, tuple) else img)
        h, w = img.shape
        crops = [img, img[:, ::-1], img[h // 4: h - h // 4, w // 4: w - w // 4]]  # whole, mirror, centre 2x
        crops += [img[y: y + h // 2, x: x + w // 2] for y in (0, h // 2) for x in (0, w // 2)]  # quadrants 2x
        out += [_fit(np.ascontiguousarray(c), YOLO_SIZE) for c in crops]
    return out


def face_grids(first: int, count: int) -> list[np.ndarray]:
    """Frames of 4x4 real faces (scikit-image's LFW subset, faces ``first`` .. ``first + 16 * count - 1``):
    YOLOv8n-nudenet's face classes, many boxes per frame where the photos alone give few."""
    from PIL import Image
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).astype(np.uint8)  # the first 100 of the subset are faces
    cell = YOLO_SIZE[0] // 4
    out = []
    for j in range(count):
        frame = np.full(YOLO_SIZE, 128, np.uint8)
        for k in range(16):
            y, x = divmod(k, 4)
            face = Image.fromarray(faces[first + 16 * j + k]).resize((cell, cell), Image.Resampling.BICUBIC)
            frame[y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = np.asarray(face)
        out.append(frame)
    return out


def yolo_boxes(head: np.ndarray, score: float = 0.25, iou: float = 0.45) -> list[tuple[int, float, np.ndarray]]:
    """YOLOv8 head [1, 4 + classes, anchors] -> (class, score, xyxy) after per-class NMS."""
    import cv2

    p = head[0].T
    cls, conf = p[:, 4:].argmax(axis=1), p[:, 4:].max(axis=1)
    keep = conf >= score
    xywh = p[keep, :4]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, 2:]], axis=1)
    out = []
    for c in np.unique(cls[keep]):
        idx = np.flatnonzero(cls[keep] == c)
        for i in np.asarray(cv2.dnn.NMSBoxes(boxes[idx].tolist(), conf[keep][idx].tolist(), score, iou)).reshape(-1):
            x, y, w, h = boxes[idx[i]]
            out.append((int(c), float(conf[keep][idx[i]]), np.array([x, y, x + w, y + h])))
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
    return inter / union if union > 0 else 0.0


def map50(truth: list[list], preds: list[list]) -> float | None:
    """mAP@0.5 (all-point interpolation), classes averaged; the fp32 boxes are the ground truth."""
    aps = []
    for c in sorted({b[0] for frame in truth for b in frame}):
        gts = [[b[2] for b in frame if b[0] == c] for frame in truth]
        found = [np.zeros(len(g), bool) for g in gts]
        dets = sorted(((b[1], i, b[2]) for i, frame in enumerate(preds) for b in frame if b[0] == c),
                      key=lambda d: -d[0])
        tp = []
        for _, i, box in dets:
            ious = [box_iou(box, g) for g in gts[i]]
            j = int(np.argmax(ious)) if ious else -1
            hit = j >= 0 and ious[j] >= 0.5 and not found[i][j]
            if hit:
                found[i][j] = True
            tp.append(hit)
        n = sum(len(g) for g in gts)
        tps = np.cumsum(tp) if tp else np.zeros(0)
        recall = np.concatenate([[0.0], tps / n, [1.0]]) if n else np.zeros(2)
        precision = np.concatenate([[1.0], tps / np.arange(1, len(tp) + 1), [0.0]]) if tp else np.array([1.0, 0.0])
        if not tp:
            recall = np.array([0.0, 1.0])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum(np.diff(recall) * precision[1:])))
    return float(np.mean(aps)) if aps else None


def yolo_rows(quick: bool, tmp: Path) -> None:
    calib = yolo_frames(YOLO_CALIB[:4] if quick else YOLO_CALIB) + face_grids(0, 1 if quick else 3)
    held = yolo_frames(YOLO_HELD[:4] if quick else YOLO_HELD) + face_grids(52, 1 if quick else 3)
    yolo = wheel_member(tmp, "nudenet-3.4.2-*.whl", "nudenet/320n.onnx")
    scaled = lambda f: np.repeat(f[None, None].astype(np.float32), 3, axis=1) / 255.0  # noqa: E731
    ref = outputs(onnx.load(str(yolo)), held, scaled)
    ref_boxes = [yolo_boxes(r) for r in ref]
    n_boxes = sum(len(b) for b in ref_boxes)
    print(f"YOLOv8n: {n_boxes} fp32 boxes on {len(held)} held-out frames", flush=True)
    rows = []

    def row(label: str, model: onnx.ModelProto, feed, seconds: float, kept: int | str) -> None:  # noqa: ANN001
        from edgefold.core.metrics import cosine_similarity

        got = outputs(model, held, feed)
        cos = [cosine_similarity(r.reshape(-1), g.reshape(-1)) for r, g in zip(ref, got)]
        m = map50(ref_boxes, [yolo_boxes(g, score=0.01) for g in got])  # as in mAP evaluation: low-score predictions count
        share = mac_share(model, YOLO_SIZE)
        rows.append((label, f"{min(cos):.4f}", f"{np.mean(cos):.4f}", "-" if m is None else f"{m:.3f}",
                     share, str(kept), f"{seconds:.0f}"))
        print(" | ".join(rows[-1]), flush=True)

    fold = FoldOptions(channels="gray", input_dtype="uint8", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       scale=255.0)  # type: ignore[arg-type]
    default_and_anchors(row, yolo, calib, tmp, fold, "images:1x1x320x320", scaled)
    print_table(f"YOLOv8n, {len(held)} held-out frames ({n_boxes} fp32 boxes), {len(calib)} calibration",
                ("variant", "cosine min", "cosine mean", "mAP@0.5 vs fp32", "INT8 MACs", "FP16 layers", "build s"),
                rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", default="det,cls,yolo", help="comma-separated: det, cls, yolo")
    args = ap.parse_args()
    chosen = set(args.models.split(","))
    for key, rows_of in (("cls", classifier_rows), ("yolo", yolo_rows)):
        if key in chosen:
            with tempfile.TemporaryDirectory(prefix=f"edgefold-bench-int8-{key}-") as t:
                rows_of(args.quick, Path(t))
    if "det" in chosen:
        detector_rows(args.quick)


def detector_rows(quick: bool) -> None:
    calib, held_text, held_free = frames(quick)
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
            share = mac_share(model, SIZE)
            rows.append((label, f"{iou:.3f}", f"{iou_min:.3f}", f"{100 * fp:.2f}%",
                         share, str(kept), f"{seconds:.0f}"))
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
    print_table("PP-OCRv4 text detector", ("variant", "IoU mean", "IoU min", "false text", "INT8 MACs", "FP16 layers",
                                           "build s"), rows)
    print(f"\nheld out: {len(held_text)} text frames, {len(held_free)} text-free photos; calibration {len(calib)} frames")


if __name__ == "__main__":
    main()
