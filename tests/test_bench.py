"""``edgefold bench`` as the README shows it: today's pipeline is exactly what the user runs (no CPU step when the
original preprocesses in its graph), both models in one runtime, rows named by what they contain, and the two
pipelines computing the same outputs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from tests.models import NORM_FLAGS, head


def _bench(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(["bench", *argv, "--frames", "2", "--warmup", "1"]) == 0
    return capsys.readouterr().out


def _agreement(text: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith("same work:"))
    return float(line.split("agree to ")[1].split()[0])


def test_an_original_that_preprocesses_in_its_graph_gets_no_cpu_step(tmp_path, capsys):
    """The README's demo flow: the demo original takes raw uint8 and normalises in its graph, so today's pipeline
    is that model fed the raw frame - no 'CPU preprocessing' row charged to it."""
    from edgefold.demo import demo_model

    src, out = tmp_path / "demo_classifier.onnx", tmp_path / "demo_classifier.folded.onnx"
    onnx.save(demo_model(), str(src))
    assert main(["fold", str(src), "-o", str(out), "--input-size", "64x80", "-q"]) == 0
    text = _bench(capsys, str(out), "--baseline", str(src))
    assert "today: CPU step" not in text and "CPU preprocessing" not in text, text
    assert "today: original model (input uint8 1x1x64x80: the raw frame as it is, no CPU step)" in text, text
    assert "folded model (input uint8 1x1x64x80)" in text and "today / folded:" in text, text
    assert _agreement(text) < 1e-4, text


def test_a_bare_original_is_charged_the_numpy_normalisation_it_needs(tmp_path, capsys):
    """The README's table flow: a bare float model folded with --gray --mean/--std/--scale; today = replicate and
    normalise to float32 3 channels in numpy, then the original. Rows say what each input is."""
    b = ModelBuilder(seed=1)
    x = b.input("input", ["n", 3, "h", "w"], np.float32)
    src, out = tmp_path / "bare.onnx", tmp_path / "bare.gray.onnx"
    onnx.save(b.model([head(b, b.conv(x, 3, 8, k=7, stride=2, name="stem"))]), str(src))
    assert main(["fold", str(src), "-o", str(out), "--gray", *NORM_FLAGS, "--input-dtype", "uint8", "-q",
                 "--input-size", "96x128"]) == 0
    text = _bench(capsys, str(out), "--baseline", str(src), "--gray", *NORM_FLAGS)
    assert "today: CPU step: normalise uint8 1ch -> float32 3ch (numpy)" in text, text
    assert "today: original model (input float32 1x3x96x128)" in text and "today: total" in text, text
    assert "folded model (input uint8 1x1x96x128)" in text, text
    assert "raw uint8" not in text and _agreement(text) < 1e-4, text


@pytest.mark.parametrize("fmt", ["BayerRG8", "NV12", "Mono12"])
def test_a_camera_format_today_is_the_conversion_then_the_normalisation(fmt, tmp_path, capsys):
    """Today's CPU step for a camera format: OpenCV's cvtColor (a scale for Mono12) into float32, equal to
    edgefold's float reference up to OpenCV's integer rounding; a Mono12 input is float32, not 'raw uint8'."""
    from tests.test_pixel_formats import _camera_pair

    _camera_pair(fmt, tmp_path)
    text = _bench(capsys, str(tmp_path / "cam.onnx"), "--baseline", str(tmp_path / "orig.onnx"))
    assert "today: CPU step:" in text and "raw uint8" not in text, text
    if fmt == "Mono12":
        assert "scale uint16 1ch -> float32 1ch" in text and "folded model (input float32" in text, text
        assert _agreement(text) < 1e-4, text
    else:
        assert f"{fmt} -> RGB (OpenCV cvtColor)" in text, text
        assert _agreement(text) < 0.02, text  # OpenCV rounds its RGB to uint8


def test_today_input_equals_the_declared_feed():
    """The numpy step bench times computes what compare's reference feed computes."""
    from edgefold.cli.bench import today_input
    from edgefold.compare import CompareOptions
    from edgefold.compare.feeds import declared_feed
    from edgefold.core.affine import ChannelAffine
    from edgefold.core.frames import InputFeed

    plain = InputFeed("input", "float32", (1, 3, 4, 5), 1, ChannelAffine.identity(3))
    opts = CompareOptions(channels="gray", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=255.0)
    feed = declared_feed(plain, 1, opts)
    raw = np.arange(20, dtype=np.uint8).reshape(4, 5)
    step = today_input(feed, np.dtype(np.uint8), None)
    assert step.step is not None
    np.testing.assert_allclose(step.prepare(raw), feed.tensor(raw[None].astype(np.float64)), rtol=1e-6)
    same = today_input(InputFeed("image", "uint8", (1, 1, 4, 5), 1, ChannelAffine.identity(1)), np.dtype(np.uint8),
                       None)
    assert same.step is None and np.array_equal(same.prepare(raw), raw[None, None])


def test_bench_times_both_sides_with_one_runtime(tmp_path, capsys):
    from edgefold.demo import demo_model

    src = tmp_path / "m.onnx"
    onnx.save(demo_model(), str(src))
    (tmp_path / "m.engine").write_bytes(b"\0")
    assert main(["bench", str(tmp_path / "m.engine"), "--baseline", str(src)]) == 2
    assert "one runtime" in capsys.readouterr().err


def _stereo(tmp_path, gain: bool = False):
    """Two camera inputs (left, right) with their preprocessing in the graph, folded; optionally a gain input."""
    from tests.models import normalise
    from tests.test_patterns import rep_concat_cast

    b = ModelBuilder(seed=3)
    left, right = b.input("left", [1, 1, 32, 40], np.uint8), b.input("right", [1, 1, 32, 40], np.uint8)
    yl = b.conv(normalise(b, rep_concat_cast(b, left)), 3, 8, k=3, name="stem_left")
    yr = b.conv(normalise(b, rep_concat_cast(b, right)), 3, 8, k=3, name="stem_right")
    y = b.op("Add", [yl, yr])
    if gain:
        y = b.op("Mul", [y, b.input("gain", [1, 8, 1, 1], np.float32)])
    src, out = tmp_path / "stereo.onnx", tmp_path / "stereo.folded.onnx"
    onnx.save(b.model([y]), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    return src, out


def test_infer_and_bench_feed_every_camera_input(tmp_path, capsys):
    """A two-camera model folds and compares; infer takes one image per input, in input order, and bench
    times both cameras' frames on both sides."""
    from PIL import Image

    from tests.models import run

    src, out = _stereo(tmp_path)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 40)).astype(np.uint8) for _ in range(2)]
    paths = []
    for name, f in zip(("l.png", "r.png"), frames):
        Image.fromarray(f).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    res = tmp_path / "res" / "new"  # created, as build creates its folder
    assert main(["infer", str(out), *paths, "--out", str(res)]) == 0
    text = capsys.readouterr().out
    assert f"{paths[0]} + {paths[1]} (onnxruntime):" in text, text
    got = np.load(next(res.glob("l.*.npy")))
    ref = run(onnx.load(str(src)), {"left": frames[0][None, None], "right": frames[1][None, None]})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert main(["infer", str(out), paths[0]]) == 2
    assert "give images in groups of 2" in capsys.readouterr().err
    text = _bench(capsys, str(out), "--baseline", str(src))
    assert "x 2 camera inputs" in text and "uint8 1x1x32x40, uint8 1x1x32x40" in text, text
    assert _agreement(text) < 1e-4, text


def test_a_side_input_is_fed_by_bench_and_named_by_infer(tmp_path, capsys):
    from PIL import Image

    src, out = _stereo(tmp_path, gain=True)
    text = _bench(capsys, str(out), "--baseline", str(src))
    assert _agreement(text) < 1e-4, text
    img = tmp_path / "f.png"
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(img)
    assert main(["infer", str(out), str(img), str(img)]) == 2
    assert "'gain' is not a camera frame" in capsys.readouterr().err


def test_a_size_the_static_model_does_not_take_is_refused(tmp_path, capsys):
    """--size on a model folded at a fixed size was ignored without a word: the user asked for 480x640 frames and
    the table timed 64x80 ones. It is a usage error naming both sizes; the model's own size is accepted."""
    from edgefold.demo import demo_model

    src, out = tmp_path / "demo_classifier.onnx", tmp_path / "demo_classifier.folded.onnx"
    onnx.save(demo_model(), str(src))
    assert main(["fold", str(src), "-o", str(out), "--input-size", "64x80", "-q"]) == 0
    capsys.readouterr()
    assert main(["bench", str(out), "--baseline", str(src), "--size", "480x640"]) == 2
    err = capsys.readouterr().err
    assert "--size 480x640" in err and "64x80" in err and str(out) in err and "--input-size" in err, err
    assert "64x80" in _bench(capsys, str(out), "--baseline", str(src), "--size", "64x80")
