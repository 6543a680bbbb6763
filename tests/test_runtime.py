"""edgefold.runtime.Engine on the onnxruntime backend, infer/bench CLIs, sidecar checks; TensorRT in gpu tests."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from edgefold.cli.main import main
from edgefold.errors import UsageError
from edgefold.graph.builder import ModelBuilder
from edgefold.runtime import Engine, EngineMismatch
from edgefold.runtime.trt_backend import check_sidecar
from tests.models import MEAN4, NORM_FLAGS, STD4, head, run


def _bare_dynamic(tmp_path):
    b = ModelBuilder(seed=1)
    x = b.input("input", ["n", 3, "h", "w"], np.float32)
    p = tmp_path / "bare.onnx"
    onnx.save(b.model([head(b, b.conv(x, 3, 8, k=7, stride=2, name="stem"))]), str(p))
    return p


def test_engine_on_a_gray_frame_equals_the_original(folded_pair):
    src, out = folded_pair
    frame = np.random.default_rng(0).integers(0, 256, (48, 64)).astype(np.uint8)
    with Engine(out) as engine:
        assert engine.backend_name == "onnxruntime" and engine.contract.channels == 1
        got = engine.infer(frame)
    ref = run(onnx.load(str(src)), {"image": frame[None, None]})
    assert list(got) == engine.output_names
    np.testing.assert_allclose(list(got.values())[0], ref[0], rtol=1e-4, atol=1e-5)


def test_batches_and_dynamic_sizes_within_the_model(tmp_path):
    src = _bare_dynamic(tmp_path)
    out = tmp_path / "g.onnx"
    assert main(["fold", str(src), "-o", str(out), "--gray", *NORM_FLAGS, "--input-dtype", "uint8", "-q"]) == 0
    frames = np.random.default_rng(1).integers(0, 256, (3, 37, 53)).astype(np.uint8)
    with Engine(out) as engine:
        got = list(engine.infer(frames).values())[0]
        single = list(engine.infer(frames[1]).values())[0]
    rgb = (np.repeat(frames[:, None].astype(np.float32), 3, axis=1) / 255 - MEAN4) / STD4
    ref = run(onnx.load(str(src)), {"input": rgb.astype(np.float32)})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(single[0], ref[1], rtol=1e-4, atol=1e-4)


def test_colour_contract_takes_hwc_frames(tmp_path):
    src = _bare_dynamic(tmp_path)
    out = tmp_path / "bgr.onnx"
    assert main(["fold", str(src), "-o", str(out), "--bgr", *NORM_FLAGS, "--input-dtype", "uint8", "-q"]) == 0
    bgr = np.random.default_rng(2).integers(0, 256, (33, 41, 3)).astype(np.uint8)
    with Engine(out) as engine:
        got = list(engine.infer(bgr).values())[0]
    rgb = np.moveaxis(bgr[..., ::-1], -1, 0)[None].astype(np.float32)
    ref = run(onnx.load(str(src)), {"input": ((rgb / 255 - MEAN4) / STD4).astype(np.float32)})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frame, match", [
    (np.zeros((48, 64), np.float32), "raw uint8"), (np.zeros((40, 64), np.uint8), "resize frames"),
    (np.zeros((48, 64, 3), np.uint8), "looks like colour"),
    (np.zeros((1, 1, 1, 48, 64), np.uint8), "H x W or N x H x W"),
])
def test_bad_frames_are_clear_errors(folded_pair, frame, match):
    with Engine(folded_pair[1]) as engine, pytest.raises(UsageError, match=match):
        engine.infer(frame)


def test_engine_files_need_their_sidecar_and_tensorrt(tmp_path):
    e = tmp_path / "m.engine"
    e.write_bytes(b"\0")
    with pytest.raises(UsageError, match="sidecar m.json is missing"):
        Engine(e)
    (tmp_path / "m.json").write_text(json.dumps({"input_contract": {}}))
    with pytest.raises(UsageError, match="no input_contract"):
        Engine(e)
    contract = {"name": "image", "dtype": "uint8", "channels": 1, "shape": [1, 1, 48, 64], "channel_axis": 1}
    (tmp_path / "m.json").write_text(json.dumps({"input_contract": contract}))
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        with pytest.raises(Exception, match="TensorRT is not installed"):
            Engine(e)


def test_sidecar_mismatch_is_a_clear_error_not_a_crash():
    side = {"engine": {"tensorrt": "10.3.0", "compute_capability": "8.7", "gpu": "Orin"}, "build_plan": {}}
    check_sidecar(side, "10.3.1", "8.7")  # same major.minor, same GPU: fine
    with pytest.raises(EngineMismatch, match="TensorRT 10.3.0, this machine runs 11.4.1"):
        check_sidecar(side, "11.4.1", "8.7")
    with pytest.raises(EngineMismatch, match="compute capability 8.7 \\(Orin\\), this GPU is 8.6"):
        check_sidecar(side, "10.3.0", "8.6")
    check_sidecar({**side, "build_plan": {"version_compatible": True, "hardware_compat": "ampere+"}}, "11.4.1", "8.6")


def test_infer_cli_prints_top_k_and_writes_outputs(folded_pair, tmp_path, capsys):
    from skimage import data

    img = tmp_path / "camera.png"
    Image.fromarray(data.camera()).save(img)
    _, out = folded_pair
    assert main(["infer", str(out), str(img)]) == 2  # 512x512 photo, 48x64 model
    assert "pass --resize" in capsys.readouterr().err
    res = tmp_path / "res"
    res.mkdir()
    assert main(["infer", str(out), str(img), "--resize", "--out", str(res)]) == 0
    text = capsys.readouterr().out
    assert "camera.png (onnxruntime)" in text and "shape [1, 4," in text
    assert (res / "outputs.json").exists() and list(res.glob("camera.*.npy"))


@pytest.mark.parametrize("k", ["0", "-1"])
def test_infer_top_k_below_1_is_a_usage_error(folded_pair, tmp_path, capsys, k):
    # --top -1 printed K-1 classes (a slice [:-1]) and --top 0 an empty 'top-0' line
    img = tmp_path / "f.png"
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(img)
    with pytest.raises(SystemExit) as exit_:
        main(["infer", str(folded_pair[1]), str(img), "--top", k])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--top: expected at least 1" in err


def test_bench_cli_runs_both_pipelines_side_by_side(tmp_path, capsys):
    src = _bare_dynamic(tmp_path)
    out = tmp_path / "g.onnx"
    assert main(["fold", str(src), "-o", str(out), "--gray", *NORM_FLAGS, "--input-dtype", "uint8", "-q",
                 "--input-size", "96x128"]) == 0
    assert main(["bench", str(out), "--baseline", str(src), "--frames", "3", "--warmup", "1"]) == 0
    text = capsys.readouterr().out
    assert "today: CPU step" in text and "today / folded:" in text and "96x128" in text


@pytest.mark.gpu
def test_tensorrt_backend_matches_onnxruntime(folded_pair, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    src, out = folded_pair
    engine_path = tmp_path / "f.engine"
    assert main(["build", str(out), "--fp32", "-o", str(engine_path)]) == 0
    frame = np.random.default_rng(0).integers(0, 256, (48, 64)).astype(np.uint8)
    with Engine(engine_path) as trt_engine, Engine(out) as ort_engine:
        for a, b in zip(trt_engine.infer(frame).values(), ort_engine.infer(frame).values()):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_nhw_models_through_runtime_compare_and_build(tmp_path, capsys):
    from tests.models import F, normalise

    b = ModelBuilder(seed=4)
    x = b.op("Unsqueeze", [b.op("Cast", [b.input("image", [1, 40, 48], np.uint8)], to=F), b.const(np.array([1]))])
    m = b.model([head(b, b.conv(normalise(b, b.op("Concat", [x, x, x], axis=1)), 3, 8, k=3, name="stem"))])
    src, out = tmp_path / "nhw.onnx", tmp_path / "nhw.folded.onnx"
    onnx.save(m, str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    frame = np.random.default_rng(3).integers(0, 256, (40, 48)).astype(np.uint8)
    with Engine(out) as engine:
        assert engine.contract.layout == "NHW"
        got = list(engine.infer(frame).values())[0]
    np.testing.assert_allclose(got, run(m, {"image": frame[None]})[0], rtol=1e-4, atol=1e-5)
    assert main(["compare", str(src), str(out)]) == 0
    assert main(["build", str(src), "--fp16", "-o", str(tmp_path / "nhw.engine"), "--no-engine"]) == 0
    capsys.readouterr()


def test_bench_baseline_engine_gets_the_cpu_preprocessing_users_run_today():
    """With an engine of the original model as baseline, bench times numpy replicate + normalise into it."""
    from edgefold.cli.bench import today_input
    from edgefold.compare import CompareOptions
    from edgefold.compare.feeds import declared_feed
    from edgefold.core.contract import InputContract
    from edgefold.core.frames import InputFeed

    contract = {"name": "input", "dtype": "float32", "layout": "NCHW", "channels": 3, "shape": [1, 3, 4, 5],
                "channel_axis": 1}
    opts = CompareOptions(channels="gray", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=255.0)
    feed = declared_feed(InputFeed.from_contract(InputContract.from_json(contract)), 1, opts)
    frame = np.arange(20, dtype=np.uint8).reshape(4, 5)
    expected = (np.repeat(frame[None, None].astype(np.float64), 3, axis=1) / 255 - MEAN4) / STD4
    np.testing.assert_allclose(today_input(feed, np.dtype(np.uint8), None).prepare(frame), expected, rtol=1e-6)


def _multi_camera(tmp_path):
    """A gray model with a dynamic batch, folded: one call serves several cameras."""
    from edgefold.folding import fold
    from tests.models import gray_model

    m = gray_model("concat", h=48, w=64)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    folded, _ = fold(m)
    path = tmp_path / "cams.onnx"
    onnx.save(folded, str(path))
    return path


def test_engine_runs_a_batch_of_cameras_like_one_frame_each(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (48, 64)).astype(np.uint8) for i in range(3)]
    with Engine(_multi_camera(tmp_path)) as engine:
        assert engine.max_batch is None
        batched = engine.infer(frames)
        for i, f in enumerate(frames):
            one = engine.infer(f)
            for name in engine.output_names:
                np.testing.assert_allclose(batched[name][i:i + 1], one[name], rtol=1e-5, atol=1e-5)


def test_a_fixed_batch_model_refuses_several_cameras_with_one_line(folded_pair):
    _, out = folded_pair
    frame = np.zeros((48, 64), np.uint8)
    with Engine(out) as engine:
        assert engine.max_batch == 1
        with pytest.raises(UsageError, match="takes exactly 1 per call") as refused:
            engine.infer([frame, frame])
    # an ONNX model is not rebuilt with --shapes: the fix is in its export
    assert "dynamic batch" in str(refused.value) and "--shapes" not in str(refused.value)


def test_bench_reports_frames_per_second_per_camera_count(tmp_path, capsys):
    assert main(["bench", str(_multi_camera(tmp_path)), "--size", "48x64", "--frames", "2", "--warmup", "1",
                 "--batch", "3"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0] in ("1", "2", "3")]
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(float(r[2]) > 0 for r in rows), out


def test_a_newer_sidecar_schema_is_a_clear_error(tmp_path):
    e = tmp_path / "m.engine"
    e.write_bytes(b"\0")
    contract = {"name": "image", "dtype": "uint8", "channels": 1, "shape": [1, 1, 48, 64], "channel_axis": 1}
    (tmp_path / "m.json").write_text(json.dumps({"sidecar_version": 99, "input_contract": contract}))
    with pytest.raises(UsageError, match="sidecar schema version 99 is newer than this edgefold reads"):
        Engine(e)


def test_sidecar_round_trips_and_gives_every_reader_the_same_view():
    from edgefold.core.contract import Sidecar

    d = {"sidecar_version": 2, "precision": "int8", "outputs": [{"name": "y", "dtype": "float32", "shape": ["n", 4]}],
         "input_contract": {"name": "image", "dtype": "uint8", "channels": 1, "shape": ["n", 1, 48, 64],
                            "channel_axis": 1},
         "build_plan": {"profiles": [{"name": "image", "min": [1, 1, 48, 64], "opt": [2, 1, 48, 64],
                                      "max": [8, 1, 48, 64]}]}, "engine": {"built": False}, "extra": 1}
    info = Sidecar.from_json(d)
    assert info.max_batch == 8 and info.precision == "int8" and info.contract.layout == "NCHW"
    again = Sidecar.from_json(info.to_json())
    assert again.contract == info.contract and again.data["extra"] == 1 and again.version == 2
