"""What `fold`, `build` and `demo` print and write says what happened, as a user runs them (issue 23 #5, #6)."""
from __future__ import annotations

import os
import stat

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from tests.models import NORM_FLAGS, gray_model
from tests.test_pixel_formats import rgb_model


def _fold(capsys, model: onnx.ModelProto, tmp_path, *flags: str) -> tuple[str, onnx.ModelProto]:
    src, out = tmp_path / "m.onnx", tmp_path / "m.folded.onnx"
    onnx.save(model, str(src))
    capsys.readouterr()
    assert main(["fold", str(src), "-o", str(out), *flags]) == 0
    captured = capsys.readouterr()
    assert "wrote" not in captured.err, captured.err  # every verb says what it wrote on stdout
    return captured.out, onnx.load(str(out))


@pytest.mark.parametrize("fmt, expected", [("NV12", "'image' uint8 NCHW 1x1x72x64 (NV12, pixels 0..255)"),
                                           ("Mono12", "'image' float32 NCHW 1x1x40x52 (Mono12, pixels 0..4095)"),
                                           ("BayerRG8", "'image' uint8 NCHW 1x1x48x64 (BayerRG8, pixels 0..255)")])
def test_a_camera_format_summary_names_the_input_the_model_takes(fmt, expected, tmp_path, capsys):
    model = gray_model("concat", dtype=np.float32) if fmt == "Mono12" else rgb_model(48, 64)
    text, _ = _fold(capsys, model, tmp_path, "--pixel-format", fmt)
    first = text.splitlines()[0]
    assert expected in first, text
    assert f"wrote {tmp_path / 'm.folded.onnx'}" in text


@pytest.mark.parametrize("fmt, order", [("Mono8", "gray"), ("BGR8", "bgr")])
def test_an_8_bit_camera_format_gives_a_uint8_input_as_the_readme_table_says(fmt, order, tmp_path, capsys):
    """--pixel-format Mono8/BGR8 on a float-input model: the camera's uint8, not the model's float32."""
    model = gray_model("concat", dtype=np.float32) if fmt == "Mono8" else rgb_model(48, 64)
    text, folded = _fold(capsys, model, tmp_path, "--pixel-format", fmt)
    assert folded.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert "uint8 NCHW" in text and f"({order}," in text, text
    text, folded = _fold(capsys, model, tmp_path, "--pixel-format", fmt, "--input-dtype", "float32")
    assert folded.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def _bare_with_div(input_dtype=np.float32) -> onnx.ModelProto:
    """float 0..255 input, x / 255 in the graph, then a 3-channel stem."""
    b = ModelBuilder(seed=2)
    x = b.op("Div", [b.input("image", [1, 3, 32, 40], input_dtype), b.const(np.float32(255))])
    return b.model([b.conv(x, 3, 8, k=3, name="stem")])


def test_the_composed_map_is_named_by_the_flags_given(tmp_path, capsys):
    """'--mean/--std composed with the graph's own arithmetic' only when --mean/--std were given; --gray or --bgr
    alone compose nothing worth a line; --scale alone is named as --scale. And 'removed 1 node', not '1 nodes'."""
    text, _ = _fold(capsys, _bare_with_div(), tmp_path, "--gray")
    assert "composed with" not in text and "removed 1 node [Div]" in text, text
    text, _ = _fold(capsys, _bare_with_div(), tmp_path, "--bgr")
    assert "composed with" not in text, text
    text, _ = _fold(capsys, _bare_with_div(), tmp_path, "--scale", "255")
    assert "--scale composed with the graph's own arithmetic" in text and "--mean/--std" not in text, text
    text, _ = _fold(capsys, _bare_with_div(), tmp_path, "--gray", "--compose", *NORM_FLAGS)
    assert "--mean/--std composed with the graph's own arithmetic" in text, text


def test_the_macs_line_counts_the_nodes_the_fold_inserted(tmp_path, capsys):
    """The demo folded at 512x512: the stem's 308M -> 103M, plus the 2.32M of the border term's strips that inspect
    shows - counted from whatever the fold inserted, not from a border scheme's name."""
    from edgefold.demo import demo_model
    from edgefold.inspect.count import inventory

    text, folded = _fold(capsys, demo_model(), tmp_path, "--input-size", "512x512")
    assert "MACs 308M -> 103M + 2.32M in the nodes the fold inserted" in text, text
    original = inventory(onnx.load(str(tmp_path / "m.onnx"))).total
    assert original["macs"] is None  # dynamic: inspect needs the size, the fold knew it
    from edgefold.graph.shapes import specialise

    before = inventory(specialise(onnx.load(str(tmp_path / "m.onnx")), (512, 512))).total["macs"]
    after = inventory(folded).total["macs"]
    assert after - before == -205_520_896 + 2_324_352  # (103M - 308M) + 2.32M, as printed


def test_demo_files_are_ordinary_files(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    assert "+ 2.32M in the nodes the fold inserted" in text and "removed 5 nodes" in text, text
    for name in ("fold.json", "demo_classifier.folded.onnx"):
        mode = stat.S_IMODE(os.stat(tmp_path / "demo" / name).st_mode)
        assert mode & 0o044 == 0o044, f"{name} is {oct(mode)}"


def test_build_conventions_of_the_field(tmp_path, capsys):
    """-o NAME.plan is taken; no precision flag means FP32, as trtexec; the trtexec script names the timing cache
    beside itself, never this host's absolute path; --dla with --trt-version 11 is one usage line."""
    import json

    from edgefold.demo import demo_model

    src = tmp_path / "m.onnx"
    onnx.save(demo_model(), str(src))
    cache = tmp_path / "caches" / "host.cache"
    out = tmp_path / "engines" / "m.plan"
    assert main(["build", str(src), "-o", str(out), "--no-engine", "--trt-version", "10", "--shapes",
                 "image:1x1x64x64", "--timing-cache", str(cache)]) == 0
    text = capsys.readouterr().out
    assert "prepared fp32 model for TensorRT" in text, text  # not "fp32 model (fp32)"
    sidecar = json.loads((tmp_path / "engines" / "m.json").read_text())
    assert sidecar["precision"] == "fp32"
    script = (tmp_path / "engines" / "m.trtexec.sh").read_text()
    assert "--timingCacheFile=host.cache" in script and str(tmp_path) not in script, script
    assert "--saveEngine=m.plan" in script and "--fp16" not in script, script
    assert main(["build", str(src), "-o", str(tmp_path / "d.engine"), "--no-engine", "--trt-version", "11",
                 "--dla", "0", "--fp16", "--shapes", "image:1x1x64x64"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT 11.0-11.3 have no DLA" in err and len(err.strip().splitlines()) == 1, err

