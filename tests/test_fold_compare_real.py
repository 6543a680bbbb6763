"""The README's flow on every real network of the tests: ``fold --input-size HxW`` then ``compare original folded``.
paddle2onnx declares the batch as dim_value -1 and H/W as unnamed dims: both are dynamic, so the fixed-size
fold is comparable with the original (compare used to refuse it: "takes shape -1x1x?x?")."""
from __future__ import annotations

import json

import onnx
import pytest

from edgefold.cli.main import main
from tests.models import NUDENET, RAPIDOCR, wheel_model

PADDLE = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--scale", "255"]
NETWORKS = {  # wheel, file, --input-size, normalisation flags
    "pp-ocr-det": (RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "96x128", PADDLE),
    "pp-ocr-rec": (RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "48x192", PADDLE),
    "pp-ocr-cls": (RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "48x192", PADDLE),
    "yolov8n": (NUDENET, "nudenet/320n.onnx", "128x160", ["--mean", "0,0,0", "--std", "1,1,1", "--scale", "255"]),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_fold_with_input_size_then_compare(name, tmp_path, capsys):
    pattern, member, size, flags = NETWORKS[name]
    src, out, rep = tmp_path / "original.onnx", tmp_path / "folded.onnx", tmp_path / "cmp.json"
    onnx.save(wheel_model(pattern, member), str(src))
    assert main(["fold", str(src), "-o", str(out), "--gray", *flags, "--input-size", size, "-q"]) == 0
    assert main(["compare", str(src), str(out), "--random", "1", "--report", str(rep)]) == 0, capsys.readouterr().out
    report = json.loads(rep.read_text())
    assert report["passed"] and len(report["frames"]) == 5  # one random frame, black, white, edges, page
