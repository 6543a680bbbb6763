"""Camera formats on real pretrained networks (issue 12): PaddleOCR's PP-OCRv4 text detector (rapidocr wheel) and an
Ultralytics YOLOv8n detector (8.2.46 export, shipped in the nudenet wheel; 3x3/s2 stem, SiLU, x / 255).

For each format a real photo is encoded the way the camera delivers it (a Bayer mosaic, an NV12/I420 buffer
through OpenCV's encoder, packed YUYV, a 12-bit gray frame); the model folded with ``--pixel-format`` and fed that
buffer must equal "convert in float, normalise, run the original model" to float32 rounding, every output
element, borders included - with the conversion composed into the stem, not run before it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.core.contract import Meta, meta_json, pixel_format
from tests.models import NUDENET, RAPIDOCR, run, wheel_model
from tests.test_pixel_formats import _yuv_frame, mosaic, photo

NETWORKS = {  # wheel, file, input size, normalisation flags
    "pp-ocr-det": (RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                   (160, 224), ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--scale", "255"]),
    "yolov8n": (NUDENET, "nudenet/320n.onnx", (192, 256),
                ["--mean", "0,0,0", "--std", "1,1,1", "--scale", "255"]),
}
FORMATS = ["BayerRG8", "BayerGB12", "NV12", "I420", "YUV422_8", "Mono12"]


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def network(request, tmp_path_factory):
    pattern, member, size, flags = NETWORKS[request.param]
    model = wheel_model(pattern, member)
    path = tmp_path_factory.mktemp(request.param) / "original.onnx"
    onnx.save(model, str(path))
    return request.param, path, size, flags


def _camera_frame(fmt: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(the camera's buffer, what the original model sees before its normalisation: (3, H, W) float)."""
    f = pixel_format(fmt)
    if f.mosaic:
        bits = f.bits
        m = mosaic(photo(h, w, 1), f.mosaic).astype(np.uint16) * ((2 ** bits - 1) // 255)
        buf = m.astype(np.uint8 if bits == 8 else np.float32)
    elif f.chroma:
        buf = _yuv_frame(fmt, h, w, 2)
    else:  # Mono12: a gray photo at 12 bits
        gray = photo(h, w, 0).mean(axis=2)
        buf = np.round(gray * 4095 / 255).astype(np.float32)
    ref = f.reference(buf[None].astype(np.float64), 3)
    if ref.shape[0] == 1:
        ref = np.repeat(ref, 3, axis=0)
    return buf, ref


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_real_network_reads_the_camera_buffer_exactly(network, fmt, tmp_path):
    name, src, (h, w), flags = network
    out = tmp_path / "camera.onnx"
    assert main(["fold", str(src), "-o", str(out), "-q", "--pixel-format", fmt, "--input-size", f"{h}x{w}",
                 *flags]) == 0
    camera = onnx.load(str(out))
    frontend = meta_json(camera, Meta.FRONTEND)
    assert frontend["form"] == "composed", frontend  # the conversion is in the stem: no RGB frame in the engine
    buf, ref_rgb = _camera_frame(fmt, h, w)
    mean, std = (0.5, 0.5) if name == "pp-ocr-det" else (0.0, 1.0)
    original = onnx.load(str(src))
    x_name = original.graph.input[0].name
    ref = run(original, {x_name: ((ref_rgb[None] / 255 - mean) / std).astype(np.float32)})
    got = run(camera, {x_name: buf[None, None]})
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        assert np.abs(r - g).max() <= 1e-5 + 1e-4 * np.abs(r).max(), (name, fmt, np.abs(r - g).max())


def test_the_stem_costs_fewer_macs_than_the_rgb_stem_for_each_colour_format(network, tmp_path):
    """What the report states: MACs per stem output, composed against the RGB stem."""
    name, src, (h, w), flags = network
    for fmt in ("BayerRG8", "NV12", "YUV422_8"):
        out = tmp_path / f"{fmt}.onnx"
        assert main(["fold", str(src), "-o", str(out), "-q", "--no-verify", "--pixel-format", fmt,
                     "--input-size", f"{h}x{w}", *flags]) == 0
        (composed, rgb), = meta_json(onnx.load(str(out)), Meta.FRONTEND)["macs_per_output"].values()
        assert rgb == 27  # both stems are 3x3 convs on RGB
        assert composed == {"BayerRG8": 25, "NV12": 17, "YUV422_8": 21}[fmt], (name, fmt, composed)

