"""edgefold compare: passes on exact folds and, as importantly, fails on wrong ones."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from edgefold.cli.main import main
from edgefold.compare import CompareOptions, compare
from edgefold.graph.builder import ModelBuilder
from tests.models import NORM_FLAGS, gray_model, head


def _bare(tmp_path, h=32, w=40):
    b = ModelBuilder(seed=3)
    x = b.input("input", [1, 3, h, w], np.float32)
    y = b.conv(x, 3, 8, k=7, stride=2, name="stem")
    p = tmp_path / "bare.onnx"
    onnx.save(b.model([head(b, y)]), str(p))
    return p


def test_exact_fold_passes_with_report_and_heatmap(folded_pair, tmp_path, capsys):
    src, out = folded_pair
    rep, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert main(["compare", str(src), str(out), "--report", str(rep), "--heatmap", str(png)]) == 0
    assert "PASS" in capsys.readouterr().out
    report = json.loads(rep.read_text())
    assert report["passed"] and report["polygraphy_passed"] and report["precision"] == "fp32"
    assert report["feeds"]["candidate"]["dtype"] == "uint8"
    assert np.asarray(report["feeds"]["reference"]["affine"]["matrix"]).shape == (1, 1)  # the original took gray
    assert Image.open(png).size[0] >= 64


def test_interior_only_fold_fails_and_the_heatmap_shows_the_border(folded_pair, tmp_path, capsys):
    src, _ = folded_pair
    approx = tmp_path / "approx.onnx"
    assert main(["fold", str(src), "-o", str(approx), "--border", "approx", "-q"]) == 0
    capsys.readouterr()
    rep = tmp_path / "cmp.json"
    assert main(["compare", str(src), str(approx), "--report", str(rep), "--heatmap", str(tmp_path / "h.png")]) == 1
    assert "MISMATCH" in capsys.readouterr().out
    assert json.loads(rep.read_text())["passed"] is False
    err = next(iter(compare(str(src), str(approx)).errors.values()))  # (H, W) max error map
    h, w = err.shape
    assert err.max() > 1e-2 and err[h // 4:3 * h // 4, w // 4:3 * w // 4].max() < 1e-4  # all on the border


def test_perturbed_weight_fails(folded_pair, tmp_path):
    src, out = folded_pair
    m = onnx.load(str(out))
    w = next(t for t in m.graph.initializer if t.name == "stem/folded_W")
    arr = onnx.numpy_helper.to_array(w).copy()
    arr.flat[0] += 0.01
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    assert main(["compare", str(src), str(bad)]) == 1


@pytest.mark.parametrize("fold_order, compare_order, code", [("bgr", "bgr", 0), ("bgr", "rgb", 1), ("rgb", "bgr", 1)])
def test_bare_original_and_channel_order(tmp_path, fold_order, compare_order, code):
    src = _bare(tmp_path)
    out = tmp_path / "f.onnx"
    assert main(["fold", str(src), "-o", str(out), f"--{fold_order}", *NORM_FLAGS, "-q"]) == 0
    assert main(["compare", str(src), str(out), f"--{compare_order}", *NORM_FLAGS]) == code


def test_bare_original_gray_without_flags_uses_the_fold_metadata(tmp_path):
    src = _bare(tmp_path)
    out = tmp_path / "f.onnx"
    assert main(["fold", str(src), "-o", str(out), "--gray", *NORM_FLAGS, "--input-dtype", "uint8", "-q"]) == 0
    result = compare(str(src), str(out))
    assert result.passed
    assert result.feeds[0].affine.matrix.shape == (3, 1) and result.feeds[1].dtype == "uint8"
    # and a wrong declaration on the command line is caught
    assert not compare(str(src), str(out), CompareOptions(channels="gray", mean=(0.5,), std=(0.5,), scale=255)).passed


def test_real_photos_from_scikit_image(tmp_path, capsys):
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("camera", "coins", "moon", "page"):
        Image.fromarray(getattr(data, name)()).save(photos / f"{name}.png")
    np.save(photos / "text.npy", data.text())
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(gray_model("concat", h=96, w=128), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    result = compare(str(src), str(out), CompareOptions(images=str(photos), random=0))
    # the images, then black, white, edges and a page: flat frames are where a network's own noise is largest
    assert result.passed and result.frames == ("camera.png", "coins.png", "moon.png", "page.png", "text.npy",
                                               "black", "white", "edges", "page")


def test_images_of_different_sizes_on_a_dynamic_model(tmp_path, capsys):
    from edgefold.demo import demo_model

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for h, w in ((64, 96), (80, 72)):
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(photos / f"{h}x{w}.png")
    src, out = tmp_path / "demo.onnx", tmp_path / "demo.folded.onnx"
    onnx.save(demo_model(), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    for verbose in ([], ["-v"]):  # exited 5 (inhomogeneous shape), and 1 with -v
        assert main([*verbose, "compare", str(src), str(out), "--images", str(photos),
                     "--heatmap", str(tmp_path / "h.png")]) == 0
        assert "PASS" in capsys.readouterr().out


def test_mono12_fold_of_a_uint8_model_compares_against_the_unrounded_conversion(tmp_path, capsys):
    """The original takes uint8: fed the Mono12 frame scaled to 8 bits and rounded, it differed from the fold
    (which reads the exact value) by 0.0101; compare feeds it the conversion unrounded, through its own Cast."""
    from edgefold.demo import demo_model

    src, out = tmp_path / "demo.onnx", tmp_path / "demo.mono12.onnx"
    onnx.save(demo_model(), str(src))
    assert main(["fold", str(src), "--pixel-format", "Mono12", "--input-size", "64x96", "-o", str(out), "-q"]) == 0
    rep = tmp_path / "cmp.json"
    assert main(["compare", str(src), str(out), "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["feeds"]["reference"]["dtype"] == "float32"
    capsys.readouterr()


def test_heatmap_without_a_spatial_output_is_skipped_with_a_note(tmp_path, capsys):
    b = ModelBuilder(seed=1)
    x = b.input("image", [1, 1, 32, 40], np.uint8)
    from tests.models import normalise
    from tests.test_patterns import rep_concat_cast

    y = b.op("Flatten", [b.op("GlobalAveragePool", [b.conv(normalise(b, rep_concat_cast(b, x)), 3, 8, k=3)])])
    src, out = tmp_path / "cls.onnx", tmp_path / "cls.folded.onnx"
    onnx.save(b.model([y]), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    rep, png = tmp_path / "cmp.json", tmp_path / "h.png"
    assert main(["compare", str(src), str(out), "--report", str(rep), "--heatmap", str(png)]) == 0  # exited 2
    printed = capsys.readouterr()
    assert "PASS" in printed.out and "no heatmap" in printed.err
    assert json.loads(rep.read_text())["passed"] and not png.exists()


def test_reduced_precision_tolerances_and_overrides(folded_pair):
    src, out = folded_pair
    r = compare(str(src), str(out), CompareOptions(precision="fp16"))
    assert r.passed and r.tolerance.top1 == 0.99
    strict = compare(str(src), str(out), CompareOptions(atol={"": 0.0}, rtol={"": 0.0}))
    assert not strict.passed or all(o.max_abs == 0 for o in strict.outputs)


def test_usage_errors(folded_pair, tmp_path, capsys):
    src, out = folded_pair
    assert main(["compare", str(src), str(out), "--images", str(tmp_path / "nope")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(src), str(out), "--images", str(empty)]) == 2
    other = tmp_path / "other.onnx"
    b = ModelBuilder()
    x = b.input("image", [1, 1, 48, 64], np.uint8)
    onnx.save(b.model([b.op("Cast", [x], to=onnx.TensorProto.FLOAT, name="z")]), str(other))
    assert main(["compare", str(src), str(other)]) == 2
    assert "no output named" in capsys.readouterr().err


def test_engine_candidate_without_tensorrt_exits_4(folded_pair, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except Exception:  # noqa: BLE001
        pass
    src, _ = folded_pair
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0")
    assert main(["compare", str(src), str(engine)]) == 4
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.gpu
def test_fp16_engine_against_the_original(folded_pair, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    src, out = folded_pair
    major = int(trt.__version__.split(".")[0])
    config = CreateConfig() if major >= 11 else CreateConfig(fp16=True)
    engine = tmp_path / "f.engine"
    engine.write_bytes(EngineBytesFromNetwork(NetworkFromOnnxPath(str(out)), config=config)())
    contract = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["edgefold.input_contracts"])[0]
    sources = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["edgefold.source_inputs"])
    (tmp_path / "f.json").write_text(json.dumps({"input_contract": contract, "source_inputs": sources,
                                                 "precision": "fp32" if major >= 11 else "fp16"}))
    assert main(["compare", str(src), str(engine)]) == 0


def test_multi_camera_model_is_compared_on_every_folded_input(tmp_path):
    from tests.models import normalise
    from tests.test_patterns import rep_concat_cast

    b = ModelBuilder()
    left, right = b.input("left", [1, 1, 32, 40], np.uint8), b.input("right", [1, 1, 32, 40], np.uint8)
    gain = b.input("gain", [1, 8, 1, 1], np.float32)
    yl = b.conv(normalise(b, rep_concat_cast(b, left)), 3, 8, k=3, name="stem_left")
    yr = b.conv(normalise(b, rep_concat_cast(b, right)), 3, 8, k=3, name="stem_right")
    src, out = tmp_path / "stereo.onnx", tmp_path / "stereo.folded.onnx"
    onnx.save(b.model([b.op("Mul", [b.op("Add", [yl, yr]), gain])]), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    assert compare(str(src), str(out)).passed
    approx = tmp_path / "approx.onnx"
    assert main(["fold", str(src), "-o", str(approx), "-q", "--border", "approx"]) == 0
    assert not compare(str(src), str(approx)).passed


def test_a_folded_model_against_another_original_is_a_usage_error(folded_pair, tmp_path, capsys):
    """The candidate's metadata names the input of the original it was folded from; given another model as the
    reference (whose input is named differently) compare crashed with an internal error (exit 5, onnxruntime's
    'Invalid input name'). It is one usage line naming the reference, the input and what to give instead."""
    _, out = folded_pair
    other = _bare(tmp_path)  # input 'input'; the pair's original reads 'image'
    assert main(["compare", str(other), str(out)]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "'image'" in err and "'input'" in err and "folded from" in err, err
    assert "internal error" not in err


def test_images_that_is_missing_or_a_file_says_which(folded_pair, tmp_path, capsys):
    """A missing --images folder is 'PATH: no such file or folder' as every missing path (it said 'not a folder of
    images'); an image file given where the folder is expected says to give its folder."""
    src, out = folded_pair
    capsys.readouterr()
    missing = tmp_path / "nope"
    assert main(["compare", str(src), str(out), "--images", str(missing)]) == 2
    assert f"{missing}: no such file or folder" in capsys.readouterr().err
    photo = tmp_path / "frame.png"
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(photo)
    assert main(["compare", str(src), str(out), "--images", str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"{photo}: a file" in err and "folder" in err, err


def test_a_declared_order_that_does_not_fit_the_candidate_names_the_flag_that_does(tmp_path, capsys):
    """--rgb against a gray-folded candidate said only "input 'input': rgb input has 3 raw channels, not 1"."""
    src = _bare(tmp_path)
    out = tmp_path / "bare.gray.onnx"
    assert main(["fold", str(src), "-o", str(out), "--gray", *NORM_FLAGS, "-q"]) == 0
    capsys.readouterr()
    assert main(["compare", str(src), str(out), "--rgb", *NORM_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "--rgb" in err and "1-channel" in err and "--gray" in err, err
