"""Flows run exactly as the README shows them, on small models a new user would build with onnx.helper."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgefold.cli.main import main

MEAN, STD = "0.485,0.456,0.406", "0.229,0.224,0.225"


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def classifier(h="H", w="W") -> onnx.ModelProto:
    """A bare 3-channel float classifier: conv, ReLU, global pool, dense head (no spatial output)."""
    rng = np.random.default_rng(0)
    g = helper.make_graph([
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], name="fc", transB=1)],
        "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [_init("w", rng.normal(0, .1, (16, 3, 3, 3))), _init("b", rng.normal(0, .1, 16)),
         _init("w2", rng.normal(0, .1, (10, 16))), _init("b2", rng.normal(0, .1, 10))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def segmenter() -> onnx.ModelProto:
    """A bare 3-channel float segmenter with dynamic H, W and a sigmoid map of the input's size."""
    rng = np.random.default_rng(1)
    g = helper.make_graph([
        helper.make_node("Conv", ["x", "w"], ["c"], name="stem", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w3", "b3"], ["l"], name="head", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Sigmoid", ["l"], ["mask"], name="sigmoid")],
        "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [_init("w", rng.normal(0, .2, (8, 3, 3, 3))), _init("w3", rng.normal(0, .3, (1, 8, 3, 3))),
         _init("b3", [0.0])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def unnamed() -> onnx.ModelProto:
    """uint8 gray -> Cast, x3, /255, -mean, /std -> Conv -> ReLU, and not one node has a name."""
    rng = np.random.default_rng(2)
    g = helper.make_graph([
        helper.make_node("Cast", ["img"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["f", "f", "f"], ["f3"], axis=1),
        helper.make_node("Div", ["f3", "s255"], ["d"]),
        helper.make_node("Sub", ["d", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["n"]),
        helper.make_node("Conv", ["n", "w"], ["c"], pads=[2, 2, 2, 2], strides=[2, 2], kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c"], ["out"])],
        "unnamed", [helper.make_tensor_value_info("img", TensorProto.UINT8, [1, 1, 32, 40])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 16, 20])],
        [_init("w", rng.normal(0, .1, (8, 3, 5, 5))), _init("s255", [255.0]),
         _init("mean", np.array([.485, .456, .406]).reshape(1, 3, 1, 1)),
         _init("std", np.array([.229, .224, .225]).reshape(1, 3, 1, 1))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _images(folder, sizes) -> str:
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(folder / f"frame{i}.png")
    return str(folder)


@pytest.fixture
def folded_classifier(tmp_path):
    src, out = tmp_path / "cls.onnx", tmp_path / "cls.gray.onnx"
    onnx.save(classifier(32, 40), str(src))
    assert main(["fold", str(src), "-o", str(out), "--gray", "--mean", MEAN, "--std", STD, "--scale", "255"]) == 0
    return src, out


def test_compare_heatmap_without_spatial_output_writes_the_report_and_says_why_no_heatmap(folded_classifier, tmp_path,
                                                                                         capsys):
    """`compare ... --report cmp.json --heatmap cmp.png` on a classifier: the verdict decides the exit code (it
    printed PASS, then exited 2 with no report), the report is written, and one line says why there is no PNG."""
    src, out = folded_classifier
    capsys.readouterr()
    rep, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert main(["compare", str(src), str(out), "--report", str(rep), "--heatmap", str(png)]) == 0
    captured = capsys.readouterr()
    assert "PASS" in captured.out and rep.exists() and not png.exists()
    assert len(captured.err.strip().splitlines()) == 1 and "no spatial" in captured.err


def test_compare_images_of_several_sizes_on_a_dynamic_model(tmp_path, capsys):
    """`compare --images DIR --heatmap` with frames of different sizes (native size for dynamic models): a verdict
    and a heatmap, not exit 5."""
    src, out = tmp_path / "seg.onnx", tmp_path / "seg.gray.onnx"
    onnx.save(segmenter(), str(src))
    assert main(["fold", str(src), "-o", str(out), "--gray", "--scale", "255"]) == 0
    images = _images(tmp_path / "frames", [(40, 56), (33, 47)])
    rep, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    capsys.readouterr()
    assert main(["compare", str(src), str(out), "--images", images, "--report", str(rep), "--heatmap", str(png)]) == 0
    assert "PASS" in capsys.readouterr().out
    assert rep.exists() and png.exists()


def test_compare_images_always_adds_the_extreme_frames(folded_classifier, tmp_path):
    """README: frames from --images 'and/or --random N ... always with black, white, hard-edge and document-like
    frames, because borders and extremes are where folds break'."""
    src, out = folded_classifier
    images = _images(tmp_path / "frames", [(32, 40), (50, 60)])
    rep = tmp_path / "cmp.json"
    assert main(["compare", str(src), str(out), "--images", images, "--report", str(rep)]) == 0
    frames = json.loads(rep.read_text())["frames"]
    assert len(frames) == 6 and {"black", "white", "edges", "page"} <= set(frames)


def test_inspect_against_a_model_without_node_names(tmp_path, capsys):
    """`inspect model.onnx --against model.folded.onnx` when no node has a name: the first conv before/after and
    the removed preprocessing are found by the graph, not by names."""
    src, out = tmp_path / "m.onnx", tmp_path / "m.folded.onnx"
    onnx.save(unnamed(), str(src))
    assert main(["fold", str(src), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(src), "--against", str(out)]) == 0
    text = capsys.readouterr().out
    assert "W 8x3x5x5 -> " in text and "W 8x1x5x5" in text
    assert "first-layer MACs" in text
    removed = next(line for line in text.splitlines() if "preprocessing removed" in line)
    assert all(op in removed for op in ("Cast", "Concat", "Div", "Sub")), removed
    assert main(["inspect", str(src), "--against", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert sorted(r["op"] for r in doc["removed"]) == ["Cast", "Concat", "Div", "Div", "Sub"]


def test_infer_missing_frame_is_no_such_file(folded_classifier, tmp_path, capsys):
    """README: 'A missing model, engine or frame is `PATH: no such file` (2) for every verb'."""
    _, out = folded_classifier
    missing = tmp_path / "nope.png"
    capsys.readouterr()
    assert main(["infer", str(out), str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{missing}: no such file" in err[0]


def test_folding_a_folded_model_says_so(folded_classifier, tmp_path, capsys):
    """`edgefold fold` on its own output: one usage line saying it is already folded (before: a refusal of the
    fold's border-term Slice, 'split it into two Slice nodes', which sent the user to edit the graph)."""
    _, out = folded_classifier
    again = tmp_path / "again.onnx"
    capsys.readouterr()
    assert main(["fold", str(out), "-o", str(again), "--gray", "--scale", "255"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already folded" in err[0] and str(out) in err[0]
    assert not again.exists()


def test_compare_mono12_against_a_uint8_original_passes(tmp_path, capsys):
    """`fold gray.onnx --pixel-format Mono12`, then `compare gray.onnx gray.mono12.onnx` on an original with a uint8
    input that it only casts to float: the original gets the 12-bit frames' exact float conversion (before:
    rounded to uint8, MISMATCH 0.0101, unexplained), so the exact fold passes; a float-input original too."""
    src, out = tmp_path / "m.onnx", tmp_path / "m.mono12.onnx"
    onnx.save(unnamed(), str(src))
    assert main(["fold", str(src), "-o", str(out), "--pixel-format", "Mono12"]) == 0
    capsys.readouterr()
    assert main(["compare", str(src), str(out)]) == 0, capsys.readouterr().out
    seg, seg12 = tmp_path / "seg.onnx", tmp_path / "seg.mono12.onnx"
    onnx.save(segmenter(), str(seg))
    assert main(["fold", str(seg), "-o", str(seg12), "--pixel-format", "Mono12", "--scale", "255"]) == 0
    capsys.readouterr()
    assert main(["compare", str(seg), str(seg12)]) == 0


@pytest.mark.parametrize("fmt", ["BayerRG8", "NV12", "Mono12"])
def test_pixel_formats_on_a_model_without_node_names(tmp_path, fmt, capsys):
    """`fold model.onnx --pixel-format FMT` when no node has a name: the composition keyed nodes by name, so every
    unnamed node was taken for the stem and dropped (exit 5, 'Graph output is not an output of any node')."""
    src, out = tmp_path / "m.onnx", tmp_path / "m.fmt.onnx"
    model = classifier(32, 40)
    for node in model.graph.node:
        node.name = ""
    onnx.save(model, str(src))
    assert main(["fold", str(src), "-o", str(out), "--pixel-format", fmt, "--mean", MEAN, "--std", STD,
                 "--scale", "255"]) == 0
    folded = onnx.load(str(out))
    network = [n for n in folded.graph.node if n.op_type in ("Relu", "GlobalAveragePool", "Flatten", "Gemm")]
    assert [n.name for n in network] == ["", "", "", ""]  # the model's own nodes keep their (empty) names
    named = tmp_path / "named.onnx"
    onnx.save(classifier(32, 40), str(named))
    assert main(["fold", str(named), "-o", str(tmp_path / "named.fmt.onnx"), "--pixel-format", fmt, "--mean", MEAN,
                 "--std", STD, "--scale", "255"]) == 0
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256 if fmt != "Mono12" else 4096, folded.graph.input[0].type.tensor_type.shape.dim[2].dim_value
                     * 40).reshape(1, 1, -1, 40)
    from edgefold.backends.ort import session
    feed = {"x": x.astype(np.uint8 if fmt != "Mono12" else np.float32)}
    got = session(folded).run(None, feed)[0]
    want = session(onnx.load(str(tmp_path / "named.fmt.onnx"))).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_build_batch_profile_on_a_fixed_batch_model_is_refused_before_any_work(folded_classifier, tmp_path, capsys):
    """`build model.onnx --shapes x:1x1xHxW/4x1xHxW/8x1xHxW` ("several cameras, one engine") on a model exported with
    batch 1: TensorRT refuses that profile on the device, after calibration; edgefold says so first, writes nothing.
    A model with a dynamic batch takes the same profile."""
    src, _ = folded_classifier
    out = tmp_path / "engines" / "m.engine"
    capsys.readouterr()
    assert main(["build", str(src), "--gray", "--mean", MEAN, "--std", STD, "--scale", "255", "--no-engine",
                 "--shapes", "x:1x1x32x40/4x1x32x40/8x1x32x40", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch is fixed at 1" in err[0]
    assert not out.parent.exists() or not list(out.parent.iterdir())
    seg = tmp_path / "seg.onnx"
    onnx.save(segmenter(), str(seg))
    assert main(["build", str(seg), "--gray", "--scale", "255", "--no-engine", "--shapes",
                 "x:1x1x32x40/4x1x32x40/8x1x32x40", "-o", str(tmp_path / "engines" / "seg.engine")]) == 0


def test_bench_batch_on_a_fixed_batch_model_fails_before_timing(folded_classifier, capsys):
    """`edgefold bench MODEL --batch 8` on a model with batch 1: one usage line and no timing table above it (before:
    the single-frame table, then 'at most 1 frames per call; build it with a batch profile', which an .onnx
    cannot take)."""
    _, out = folded_classifier
    capsys.readouterr()
    assert main(["bench", str(out), "--batch", "4", "--frames", "2", "--warmup", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "at most 1 frame per call" in err[0] and "dynamic batch" in err[0]


def test_compare_report_never_overwrites_a_plan_sidecar(folded_classifier, tmp_path, capsys):
    """`compare model.onnx engines/m.plan --report engines/m.json`: the sidecar of a .plan (as of an .engine) is an
    input; refused before TensorRT is needed, and left as it was."""
    src, _ = folded_classifier
    plan, sidecar = tmp_path / "m.plan", tmp_path / "m.json"
    plan.write_bytes(b"not an engine")
    sidecar.write_text("{}")
    capsys.readouterr()
    assert main(["compare", str(src), str(plan), "--report", str(sidecar)]) == 2
    assert "sidecar" in capsys.readouterr().err and sidecar.read_text() == "{}"


def test_compare_bayer_fold_of_a_classifier_passes(tmp_path, capsys):
    """`fold model.onnx -o model.bayer.onnx --pixel-format BayerRG8 --mean ... --std ... --scale 255`, then `compare
    model.onnx model.bayer.onnx`: the fold verified it to 1e-7, compare said MISMATCH (1.4e-4 of max |output| on the
    white frame) because it ran the original with onnxruntime's graph optimisations on, whose conv kernels round
    differently; both sides now run as the fold's check runs them."""
    src, out = tmp_path / "cls.onnx", tmp_path / "cls.bayer.onnx"
    onnx.save(classifier(224, 224), str(src))
    assert main(["fold", str(src), "-o", str(out), "--pixel-format", "BayerRG8", "--mean", MEAN, "--std", STD,
                 "--scale", "255"]) == 0
    capsys.readouterr()
    assert main(["compare", str(src), str(out)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_build_prints_what_the_fold_did(tmp_path, capsys):
    """`edgefold build` folds "as `edgefold fold`": its summary opens with the fold's lines (input, conv,
    verification), then the precision."""
    from edgefold.demo import demo_model

    src = tmp_path / "demo.onnx"
    onnx.save(demo_model(), str(src))
    capsys.readouterr()
    assert main(["build", str(src), "-o", str(tmp_path / "e" / "demo.engine"), "--no-engine",
                 "--shapes", "image:1x1x96x128/1x1x96x128/1x1x96x128"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("input 'image' -> 'image' uint8") and "removed 5 nodes" in lines[0], lines
    assert any(line.startswith("verified on 5 frames 96x128") and line.endswith("PASS") for line in lines), lines
    assert any(line.startswith("prepared fp32 model") for line in lines), lines
