"""What an INT8 build asks TensorRT to run in which precision, per target, side by side in one process.

TensorRT 10 takes the float32 Q/DQ ONNX and picks FP16 for the unquantised rest through its FP16 flag;
TensorRT 11 is strongly typed and runs the ONNX's own types: edgefold writes that rest in float16 there
(``--keep-fp32``: float32). For each target, the prepared model's census (INT8 layers, FP16 nodes, FP32 nodes by
reason, as the ONNX types them) and the held-out accuracy that build measured on exactly that model
(onnxruntime on the CPU; no TensorRT here).

Models: edgefold's demo network at 128x160 (scikit-image photos, IoU floor 0.95) and PaddleOCR's PP-OCRv4 text
detector (rapidocr wheel; `./run test` downloads it) at 480x480, ImageNet normalisation declared, gray frames:
16 drawn text pages and 6 photos (tests/pages.py; every fifth held out by the build).

    python bench/trt11_precisions.py [--models demo,det]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgefold.demo import demo_model  # noqa: E402
from edgefold.deploy.pipeline import build  # noqa: E402
from edgefold.deploy.spec import BuildOptions, ShapeProfile  # noqa: E402
from edgefold.folding.options import FoldOptions  # noqa: E402
from edgefold.graph.shapes import specialise  # noqa: E402
from edgefold.precision.fp16 import census  # noqa: E402
from tests.pages import photos, text_page, write_folder  # noqa: E402

TARGETS = (("TensorRT 11", 11, False), ("TensorRT 11 --keep-fp32", 11, True),
           ("TensorRT 10 (FP16 flag)", 10, False))


def demo(tmp: Path) -> tuple[Path, Path, dict]:
    from PIL import Image
    from skimage import data

    onnx.save(specialise(demo_model(), (128, 160)), str(tmp / "demo.onnx"))
    (tmp / "photos").mkdir()
    for name in ("camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "cell", "horse"):
        a = getattr(data, name)()
        a = (a * 255).astype(np.uint8) if a.dtype != np.uint8 else a
        Image.fromarray(a).convert("L").save(tmp / "photos" / f"{name}.png")
    return tmp / "demo.onnx", tmp / "photos", {"accuracy_floor": {"iou": 0.95}}


def detector(tmp: Path) -> tuple[Path, Path, dict]:
    wheel = sorted((ROOT / ".cache" / "wheels").glob("rapidocr_onnxruntime-1.4.4-*.whl"))
    if not wheel:
        raise SystemExit("run `./run test` once first: it downloads the rapidocr-onnxruntime wheel")
    with zipfile.ZipFile(wheel[0]) as z:
        (tmp / "det.onnx").write_bytes(z.read("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"))
    size = (480, 480)
    write_folder(tmp / "calib", [text_page(s, size) for s in range(16)] + photos(size)[:6], "f")
    fold = FoldOptions(channels="gray", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=255.0)
    return tmp / "det.onnx", tmp / "calib", {"fold_options": fold,
                                             "shapes": (ShapeProfile.parse("x:1x1x480x480"),)}


MODELS = {"demo": demo, "det": detector}


def row(label: str, result) -> str:  # noqa: ANN001
    c = census(result.chosen.model)
    why = "; ".join(f"{sum(ops.values())} {reason.split(' (')[0].split(',')[0]}" for reason, ops in c["fp32_why"].items())
    held = ", ".join(f"{s.name}: IoU {s.map_iou:.3f} (min {s.map_iou_min:.3f})" if s.map_iou is not None else
                     f"{s.name}: top-1 {100 * (s.top1_agreement or 0):.1f}%" for s in result.chosen.on_held_out)
    kept = len(result.chosen.search.kept_float) if result.chosen.search else 0
    share = result.sidecar["int8"]["int8_mac_share"]
    return (f"| {label} | {result.chosen.label} | {100 * share:.1f}% | {kept} | {c['int8_layers']} | "
            f"{c['fp16_nodes']} | {c['fp32_nodes']} ({why}) | {held} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,det")
    args = ap.parse_args()
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            model, calib, extra = MODELS[name](tmp)
            print(f"\n{name}\n| target | strategy | INT8 MACs | kept | INT8 layers | FP16 nodes | FP32 nodes (why) | "
                  "held-out |\n|---|---|---|---|---|---|---|---|")
            for label, major, keep in TARGETS:
                options = BuildOptions(output=str(tmp / f"{name}{major}{keep}.engine"), precision="int8",
                                       calib=str(calib), engine=False, trt_major=major, keep_fp32=keep, **extra)
                print(row(label, build(str(model), options)), flush=True)


if __name__ == "__main__":
    main()
