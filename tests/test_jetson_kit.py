"""The C++ sample's CMake project and image reader (built here without TensorRT), and the Jetson scripts."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "jetson" / "cpp"
needs_cmake = pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("c++"), reason="no cmake/c++")


@needs_cmake
def test_cmake_without_tensorrt_stops_with_a_clear_message(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except Exception:  # noqa: BLE001
        pass
    r = subprocess.run(["cmake", "-S", str(CPP), "-B", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode != 0
    assert "TensorRT not found" in r.stderr and "EDGEFOLD_IMAGE_TOOLS_ONLY" in r.stderr


@needs_cmake
def test_image_reader_builds_and_reads_pgm_like_python(tmp_path):
    from skimage import data

    build = tmp_path / "b"
    subprocess.run(["cmake", "-S", str(CPP), "-B", str(build), "-DEDGEFOLD_IMAGE_TOOLS_ONLY=ON"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    frame = data.camera()[:300, :421]  # odd width: no padding assumptions
    Image.fromarray(frame).save(tmp_path / "f.pgm")
    out = subprocess.run([str(build / "edgefold_image_check"), str(tmp_path / "f.pgm")], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["300", "421", str(int(frame.astype(np.uint64).sum()))]
    nv12 = np.random.default_rng(0).integers(0, 256, (72, 64), dtype=np.uint8)  # a 48x64 NV12 camera buffer
    nv12.tofile(tmp_path / "frame.raw")
    out = subprocess.run([str(build / "edgefold_image_check"), str(tmp_path / "frame.raw")], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [str(nv12.size), str(int(nv12.astype(np.uint64).sum()))]
    (tmp_path / "bad.pgm").write_bytes(b"P2\n2 2\n255\n0 0 0 0\n")
    r = subprocess.run([str(build / "edgefold_image_check"), str(tmp_path / "bad.pgm")], capture_output=True, text=True)
    assert r.returncode == 2 and "not a binary PGM" in r.stderr


def test_jetson_scripts_are_valid_bash():
    for script in ("setup.sh", "build_on_device.sh"):
        subprocess.run(["bash", "-n", str(ROOT / "jetson" / script)], check=True)


def test_cpp_sample_reads_the_sidecar_schema_the_python_runtime_reads():
    import re

    from edgefold.core.contract import SIDECAR_VERSION

    header = (CPP / "include" / "edgefold" / "engine.hpp").read_text()
    assert int(re.search(r"kSidecarVersion = (\d+);", header).group(1)) == SIDECAR_VERSION
    assert "is newer than this app reads" in header


def test_a_camera_format_sidecar_gives_the_cpp_sample_its_buffer_size(tmp_path):
    """edgefold_infer ENGINE FRAME.raw takes rows x cols from input_contract.shape[2:] (Engine::buffer_size) and
    the format from channel_order: a build with --pixel-format must write both as the camera's buffer."""
    import json

    import onnx

    from edgefold.cli.main import main
    from tests.test_pixel_formats import rgb_model

    onnx.save(rgb_model(48, 64), str(tmp_path / "m.onnx"))
    for fmt, rows_cols, dtype in (("NV12", [72, 64], "uint8"), ("YUV422_8", [48, 128], "uint8"),
                                  ("BayerRG12", [48, 64], "float32")):
        out = tmp_path / f"{fmt}.engine"
        assert main(["build", str(tmp_path / "m.onnx"), "--fp16", "-o", str(out), "--no-engine",
                     "--pixel-format", fmt]) == 0
        contract = json.loads(out.with_suffix(".json").read_text())["input_contract"]
        assert contract["shape"][2:] == rows_cols and contract["channel_order"] == fmt and contract["dtype"] == dtype
    header = (CPP / "include" / "edgefold" / "engine.hpp").read_text()
    assert 'c.value("shape"' in header and 'c.value("channel_order"' in header
