"""Deployment targets (issue 13): DeepStream nvinfer configs and Triton model repositories from `edgefold build`,
parsed back and checked field by field; `serve-check` catches a repository that disagrees with the engine."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.core.contract import PIXEL_FORMATS
from edgefold.demo import demo_model
from edgefold.deploy import deepstream, triton
from edgefold.errors import UsageError
from edgefold.graph.shapes import specialise

# Gst-nvinfer [property] keys, as DeepStream's key-file parser defines them: gstnvinfer_property_parser.h of
# DeepStream 7.0, 8.0 and 9.2 (docs.nvidia.com/metropolis/deepstream/.../gstnvinfer__property__parser_8h.html)
# and the "Gst-nvinfer File Configuration Specifications" table of DS_plugin_gst-nvinfer (7.x-9.x). Every key
# edgefold writes must be one of these in all three major versions.
NVINFER_KEYS = {
    "gpu-id", "gie-unique-id", "process-mode", "interval", "labelfile-path", "output-tensor-meta", "enable-dla",
    "use-dla-core", "batch-size", "network-mode", "model-engine-file", "int8-calib-file", "workspace-size",
    "output-blob-names", "network-type", "infer-dims", "model-color-format", "net-scale-factor", "offsets",
    "mean-file", "onnx-file", "network-input-order", "maintain-aspect-ratio", "symmetric-padding", "scaling-filter",
    "scaling-compute-hw", "num-detected-classes", "cluster-mode", "custom-lib-path", "parse-bbox-func-name",
    "output-io-formats", "layer-device-precision", "force-implicit-batch-dim", "secondary-reinfer-interval",
}


def sidecar(channels: int = 1, order: str = "gray", dtype: str = "float32", layout: str = "NCHW",
            shape=(1, 1, 480, 640), precision: str = "fp16", profile=None) -> dict:
    axis = {"NCHW": 1, "NHWC": 3}[layout]
    side = {"precision": precision,
            "input_contract": {"name": "image", "dtype": dtype, "layout": layout, "channels": channels,
                               "channel_order": order, "shape": list(shape), "channel_axis": axis,
                               "pixel_range": [0.0, 255.0]},
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [shape[0], 10]},
                        {"name": "mask", "dtype": "float32", "shape": [shape[0], 1, 60, 80]}],
            "build_plan": {"profiles": [profile] if profile else []}}
    return side


NVINFER_FORMATS = [f for f in PIXEL_FORMATS if f.per_pixel and f.bits == 8]  # what nvinfer converts frames to


@pytest.mark.parametrize("fmt", NVINFER_FORMATS, ids=[f.genicam for f in NVINFER_FORMATS])
@pytest.mark.parametrize("precision, mode", [("fp32", "0"), ("int8", "1"), ("fp16", "2")])
def test_nvinfer_config_per_pixel_format(fmt, precision, mode):
    side = sidecar(channels=fmt.channels, order=fmt.name, shape=(1, fmt.channels, 480, 640), precision=precision)
    props = deepstream.parse_nvinfer(deepstream.nvinfer_config(side, "m.engine", "m.prepared.onnx"))
    assert set(props) <= NVINFER_KEYS, set(props) - NVINFER_KEYS
    assert props["net-scale-factor"] == "1.0" and props["offsets"] == ";".join(["0"] * fmt.channels)
    assert props["model-color-format"] == {"gray": "2", "rgb": "0", "bgr": "1"}[fmt.name]
    assert props["infer-dims"] == f"{fmt.channels};480;640" and props["network-input-order"] == "0"
    assert props["network-mode"] == mode and props["batch-size"] == "1"
    assert props["model-engine-file"] == "m.engine" and props["onnx-file"] == "m.prepared.onnx"
    assert props["output-blob-names"] == "logits;mask"


@pytest.mark.parametrize("fmt", [f for f in PIXEL_FORMATS if f not in NVINFER_FORMATS], ids=lambda f: f.genicam)
def test_nvinfer_refuses_camera_formats_it_cannot_feed(fmt):
    side = sidecar(channels=1, order=fmt.genicam, shape=(1, 1, 480, 640))
    with pytest.raises(UsageError, match="nvinfer feeds RGB, BGR or GRAY"):
        deepstream.nvinfer_config(side, "m.engine", "m.onnx")


def test_nvinfer_dynamic_input_takes_the_profile():
    profile = {"name": "image", "min": [1, 1, 240, 320], "opt": [4, 1, 480, 640], "max": [8, 1, 1080, 1920]}
    side = sidecar(shape=("n", 1, "h", "w"), profile=profile)
    props = deepstream.parse_nvinfer(deepstream.nvinfer_config(side, "m.engine", "m.onnx"))
    assert props["infer-dims"] == "1;480;640" and props["batch-size"] == "8"


@pytest.mark.parametrize("kwargs, match", [
    (dict(layout="NHWC", shape=(1, 480, 640, 3), channels=3, order="rgb"), "NCHW"),
    (dict(dtype="uint8"), "float32"),
])
def test_nvinfer_refuses_what_nvinfer_cannot_feed(kwargs, match):
    with pytest.raises(UsageError, match=match):
        deepstream.nvinfer_config(sidecar(**kwargs), "m.engine", "m.onnx")


@pytest.mark.parametrize("fmt", PIXEL_FORMATS, ids=[f.genicam for f in PIXEL_FORMATS])
def test_triton_config_round_trips_through_the_schema(fmt):
    from google.protobuf import text_format

    mc = triton.schema()
    side = sidecar(channels=fmt.channels, order=fmt.genicam, dtype=fmt.dtype, shape=(1, fmt.channels, 480, 640))
    text = triton.config_text(triton.model_config(side, "cam"))
    back = text_format.Parse(text, mc.ModelConfig())
    assert back.name == "cam" and back.platform == "tensorrt_plan" and back.max_batch_size == 0
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in back.input] == \
        [("image", {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32"}[fmt.dtype], [1, fmt.channels, 480, 640])]
    assert [o.name for o in back.output] == ["logits", "mask"] and list(back.output[1].dims) == [1, 1, 60, 80]
    assert back.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert not back.HasField("dynamic_batching")


def test_triton_dynamic_batch_leaves_the_batch_out_of_dims():
    profile = {"name": "image", "min": [1, 1, 480, 640], "opt": [4, 1, 480, 640], "max": [16, 1, 480, 640]}
    config = triton.model_config(sidecar(shape=("n", 1, 480, 640), profile=profile), "cams")
    assert config.max_batch_size == 16 and list(config.input[0].dims) == [1, 480, 640]
    assert list(config.output[0].dims) == [10] and config.HasField("dynamic_batching")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    src = root / "demo.onnx"
    onnx.save(specialise(demo_model(), (128, 160)), str(src))
    out = root / "engines" / "demo.engine"
    assert main(["build", str(src), "--fp16", "-o", str(out), "--no-engine", "--deepstream",
                 "--triton", str(root / "repo"), "--triton-onnx"]) == 0
    return root, src, out


def test_build_writes_deepstream_and_triton_files_that_agree_with_the_sidecar(built, capsys):
    root, src, out = built
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input_contract"]["dtype"] == "float32" and side["deepstream"]["model-color-format"] == 2
    props = deepstream.parse_nvinfer((root / "engines" / "demo.nvinfer.txt").read_text())
    assert props["model-engine-file"] == "demo.engine" and props["infer-dims"] == "1;128;160"
    repo = root / "repo"
    assert (repo / "demo" / "config.pbtxt").is_file() and (repo / "demo_onnx" / "1" / "model.onnx").is_file()
    capsys.readouterr()
    assert main(["serve-check", str(root / "repo")]) == 0
    assert "demo_onnx: onnxruntime_onnx" in capsys.readouterr().out


def test_the_deepstream_engine_takes_raw_float_pixels_and_equals_the_original(built, capsys):
    """nvinfer hands the engine x (0..255, float32) with net-scale-factor 1 and offsets 0: the prepared model fed
    that equals the original fed the uint8 frame (compare applies the FP16 tolerance)."""
    root, src, out = built
    prepared = root / "engines" / "demo.prepared.onnx"
    assert main(["compare", str(src), str(prepared)]) == 0
    from tests.models import run

    frame = np.random.default_rng(0).integers(0, 256, (1, 1, 128, 160)).astype(np.uint8)
    folded_fp32 = onnx.load(str(root / "repo" / "demo_onnx" / "1" / "model.onnx"))
    for a, b in zip(run(onnx.load(str(src)), {"image": frame}), run(folded_fp32, {"image": frame.astype(np.float32)})):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("edit, code, words", [
    (lambda t: t.replace("TYPE_FP32", "TYPE_UINT8", 1), 1, "is TYPE_UINT8, the engine's is TYPE_FP32"),
    (lambda t: t.replace("dims: 128", "dims: 256", 1), 1, "has dims [1, 1, 256, 160]"),
    (lambda t: t.replace('name: "demo"', 'name: "other"'), 1, "is not the folder's name"),
    (lambda t: t + "\nmax_batch_size: 8\n", 1, "max_batch_size 8"),
    (lambda t: "input { name: ", 2, "not a Triton model config"),
])
def test_serve_check_catches_a_repository_that_disagrees(built, tmp_path, capsys, edit, code, words):
    import shutil

    root, _, _ = built
    repo = tmp_path / "repo"
    shutil.copytree(root / "repo", repo)
    cfg = repo / "demo" / "config.pbtxt"
    cfg.write_text(edit(cfg.read_text()))
    capsys.readouterr()
    assert main(["serve-check", str(repo)]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_serve_check_needs_the_sidecar(built, tmp_path, capsys):
    import shutil

    root, _, _ = built
    repo = tmp_path / "repo"
    shutil.copytree(root / "repo", repo)
    (repo / "demo" / "edgefold.json").unlink()
    assert main(["serve-check", str(repo)]) == 2
    assert "no edgefold.json" in capsys.readouterr().err


def test_deepstream_flags_that_cannot_work_are_refused(built, tmp_path, capsys):
    _, src, _ = built
    out = tmp_path / "x.engine"
    assert main(["build", str(src), "-o", str(out), "--no-engine", "--deepstream", "--no-fold"]) == 2
    assert main(["build", str(src), "-o", str(out), "--no-engine", "--deepstream", "--input-dtype", "uint8"]) == 2
    assert main(["build", str(src), "-o", str(out), "--no-engine", "--triton-onnx"]) == 2
    assert not list(tmp_path.iterdir())


def _tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - the PyPI stub raises at import without its libraries
        return False
    return True


@pytest.mark.gpu
def test_tritonserver_serves_the_repository(tmp_path):
    """Where tritonserver and TensorRT exist: build an engine into a repository and start the server on it."""
    import shutil
    import subprocess
    import time
    import urllib.request

    if shutil.which("tritonserver") is None or not _tensorrt():
        pytest.skip("tritonserver or TensorRT is not installed here")
    src = tmp_path / "demo.onnx"
    onnx.save(specialise(demo_model(), (128, 160)), str(src))
    assert main(["build", str(src), "--fp16", "-o", str(tmp_path / "demo.engine"), "--triton", str(tmp_path / "repo")]) == 0
    server = subprocess.Popen(["tritonserver", f"--model-repository={tmp_path / 'repo'}", "--http-port=18000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen("http://localhost:18000/v2/models/demo/ready").status == 200:
                    return
            except OSError:
                time.sleep(1)
        pytest.fail("tritonserver did not make model 'demo' ready")
    finally:
        server.terminate()


@pytest.mark.gpu
def test_nvinfer_accepts_the_config(tmp_path):
    """Where DeepStream exists: gst-launch runs nvinfer with the written config on a test pattern."""
    import shutil
    import subprocess

    if shutil.which("gst-launch-1.0") is None or not _tensorrt() or \
            subprocess.run(["gst-inspect-1.0", "nvinfer"], capture_output=True).returncode != 0:
        pytest.skip("DeepStream (nvinfer) or TensorRT is not installed here")
    src = tmp_path / "demo.onnx"
    onnx.save(specialise(demo_model(), (128, 160)), str(src))
    assert main(["build", str(src), "--fp16", "-o", str(tmp_path / "demo.engine"), "--deepstream"]) == 0
    pipeline = (f"videotestsrc num-buffers=10 ! nvvideoconvert ! video/x-raw(memory:NVMM),width=160,height=128 ! "
                f"m.sink_0 nvstreammux name=m width=160 height=128 batch-size=1 ! "
                f"nvinfer config-file-path={tmp_path / 'demo.nvinfer.txt'} ! fakesink")
    r = subprocess.run(["gst-launch-1.0", *pipeline.split()], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_triton_nhwc_input_keeps_its_layout():
    side = sidecar(channels=3, order="bgr", dtype="uint8", layout="NHWC", shape=(1, 480, 640, 3))
    config = triton.model_config(side, "nhwc")
    assert list(config.input[0].dims) == [1, 480, 640, 3] and config.max_batch_size == 0


@pytest.mark.parametrize("verb", [["serve-check", "{tmp}/nope"],
                                  ["build", "{model}", "--input-size", "96x128", "--int8", "--calib", "{tmp}/nope",
                                   "--no-engine", "-o",
                                   "{tmp}/e/x.engine"]])
def test_a_missing_repository_or_calibration_folder_is_no_such_file_or_folder(verb, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(demo_model(), model)
    args = [a.format(tmp=tmp_path, model=model) for a in verb]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path}/nope: no such file or folder" in err[0]
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
