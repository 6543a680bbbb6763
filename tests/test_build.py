"""edgefold build on the CPU: Q/DQ rules TensorRT enforces, accuracy floors on real photos, the
Polygraphy loader plan and trtexec script per TensorRT version, artifacts; real engines in gpu tests."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from edgefold.cli.main import main
from edgefold.demo import demo_model
from edgefold.deploy.spec import BuildOptions, ShapeProfile, plan_engine
from edgefold.deploy.trt import loaders
from edgefold.errors import UsageError
from edgefold.graph.shapes import specialise
from tests.models import gray_model

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = True
except Exception:  # noqa: BLE001 - the PyPI stub raises when its libraries are missing
    HAVE_TRT = False


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("calib")
    for name in ("camera", "coins", "moon", "page", "text", "grass", "gravel", "brick", "cell", "horse"):
        a = getattr(data, name)()
        a = (a * 255).astype(np.uint8) if a.dtype != np.uint8 else a
        Image.fromarray(a).convert("L").save(d / f"{name}.png")
    return d


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("model") / "demo.onnx"
    onnx.save(specialise(demo_model(), (128, 160)), str(p))
    return p


def _int8(demo_path, photos, out_dir, *extra):
    out = out_dir / "demo.int8.engine"
    code = main(["build", str(demo_path), "--int8", "--calib", str(photos), "-o", str(out), "--no-engine", *extra])
    return code, out_dir / "demo.int8.prepared.onnx", out_dir / "demo.int8.json"


def _init(model, name):
    return next((onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name), None)


def test_qdq_nodes_follow_tensorrt_rules(demo_path, photos, tmp_path):
    code, prepared, sidecar = _int8(demo_path, photos, tmp_path)
    assert code == 0
    m = onnx.load(str(prepared))
    inits = {t.name for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]

    def weight(n):  # Q(W) -> DQ, with AddQDQPairToWeight
        src = n.input[0]
        return src in inits or (src in producer and producer[src].op_type == "QuantizeLinear"
                                and producer[src].input[0] in inits)
    assert qdq
    for n in qdq:
        zp = _init(m, n.input[2]) if len(n.input) > 2 and n.input[2] else None
        assert zp is None or (zp.dtype == np.int8 and not zp.any()), n.name  # symmetric int8
        scale = _init(m, n.input[1])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if weight(n):
            w = _init(m, n.input[0]) if n.input[0] in inits else _init(m, producer[n.input[0]].input[0])
            consumer = next(c for c in m.graph.node if (n.output[0] in c.input) and c.op_type != "DequantizeLinear") \
                if n.op_type == "DequantizeLinear" else None
            out_axis = 0 if consumer is None or consumer.op_type == "Conv" else 1  # Gemm/MatMul: (K, N)
            if consumer is not None:
                assert axis == out_axis
            assert scale.shape == (w.shape[axis],)  # per output channel
        else:
            assert scale.ndim == 0  # activations: per tensor
    side = json.loads(sidecar.read_text())
    if side["strategy"] == "recentre":
        q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image/raw_centred")
        assert float(_init(m, q.input[1])) == 1.0  # x - 128 quantised losslessly


def test_int8_and_fp16_meet_the_floor_on_real_photos(demo_path, photos, tmp_path, capsys):
    code, prepared, sidecar = _int8(demo_path, photos, tmp_path)
    assert code == 0
    side = json.loads(sidecar.read_text())
    assert side["accuracy"]["passed"] and side["prepared_precision"] == "int8"
    assert len(side["calibration"]["held_out"]) == 2
    # compare detects the Q/DQ model and applies the int8 tolerances against the original graph
    # (the demo's random-weight defect map has most pixels near its threshold: IoU 0.899 on these frames)
    assert main(["compare", str(demo_path), str(prepared), "--images", str(photos), "--random", "0",
                 "--accuracy-floor", "iou=0.85"]) == 0
    out16 = tmp_path / "demo.fp16.engine"
    assert main(["build", str(demo_path), "--fp16", "--calib", str(photos), "-o", str(out16), "--no-engine"]) == 0
    p16 = onnx.load(str(tmp_path / "demo.fp16.prepared.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in p16.graph.initializer)
    assert p16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # I/O types kept
    assert main(["compare", str(demo_path), str(tmp_path / "demo.fp16.prepared.onnx")]) == 0


def test_both_int8_strategies_are_measured_and_reported(demo_path, photos, tmp_path, capsys):
    code, _, sidecar = _int8(demo_path, photos, tmp_path)
    text = capsys.readouterr().out
    assert code == 0 and "also measured" in text
    assert json.loads(sidecar.read_text())["strategy"] in ("recentre", "float-first")
    # how many frames the figures stand on (100 % of 1 held-out frame looked as good as 100 % of 200)
    assert "accuracy measured on: onnxruntime Q/DQ simulation (no TensorRT here); 8 calibration, 2 held-out " \
           "frames\n" in text


def test_rebuild_reuses_the_calibration(demo_path, photos, tmp_path):
    _int8(demo_path, photos, tmp_path)
    first = json.loads((tmp_path / "demo.int8.json").read_text())
    _int8(demo_path, photos, tmp_path)
    second = json.loads((tmp_path / "demo.int8.json").read_text())
    assert not first["reused_calibration"] and second["reused_calibration"]
    assert first["cache_key"] == second["cache_key"]
    # another floor is another preparation (the search keeps the layers that floor needs): no reuse
    assert _int8(demo_path, photos, tmp_path, "--accuracy-floor", "iou=0.5")[0] == 0
    third = json.loads((tmp_path / "demo.int8.json").read_text())
    assert not third["reused_calibration"] and third["cache_key"] != first["cache_key"]


def test_a_prepared_model_cut_short_is_no_cache_the_build_calibrates_again(demo_path, photos, tmp_path):
    # it was 'demo.int8.prepared.onnx: not an ONNX model (DecodeError); export the network to .onnx first', exit 2
    _int8(demo_path, photos, tmp_path)
    prepared = tmp_path / "demo.int8.prepared.onnx"
    prepared.write_bytes(prepared.read_bytes()[:100])
    assert _int8(demo_path, photos, tmp_path)[0] == 0
    assert not json.loads((tmp_path / "demo.int8.json").read_text())["reused_calibration"]
    onnx.checker.check_model(onnx.load(str(prepared)))


def test_a_sidecar_that_lists_kept_layers_by_name_is_not_reused(demo_path, photos, tmp_path, monkeypatch):
    """Sidecars before layers were known by output tensor list node names (optional, may repeat): such a cache,
    key and all, is calibrated again rather than read as output tensors."""
    from edgefold.deploy import reuse
    from edgefold.deploy.prepare import prepare

    assert _int8(demo_path, photos, tmp_path, "--accuracy-floor", "iou=0.95")[0] == 0
    path = tmp_path / "demo.int8.json"
    side = json.loads(path.read_text())
    assert side["int8"]["kept_float"] and side["int8"]["layers_by"] == "first output tensor"
    options = BuildOptions(output=str(tmp_path / "demo.int8.engine"), precision="int8", calib=str(photos),
                           accuracy_floor={"iou": 0.95}, engine=False)
    assert reuse.cache_key(str(demo_path), options, prepare(str(demo_path), options).calib) == side["cache_key"]
    monkeypatch.setattr(reuse, "PREPARED_FORMAT", 1)  # the key such a sidecar was written with
    old_key = reuse.cache_key(str(demo_path), options, prepare(str(demo_path), options).calib)
    monkeypatch.undo()
    producer = {o: n for n in onnx.load(str(tmp_path / "demo.int8.prepared.onnx")).graph.node for o in n.output}
    side["int8"]["kept_float"] = [producer[k].name for k in side["int8"]["kept_float"]]
    del side["int8"]["layers_by"]
    side["cache_key"] = old_key
    path.write_text(json.dumps(side))
    assert _int8(demo_path, photos, tmp_path, "--accuracy-floor", "iou=0.95")[0] == 0
    again = json.loads(path.read_text())
    assert not again["reused_calibration"] and again["int8"]["kept_float"] == [
        k for k in again["int8"]["kept_float"] if k in producer]


def test_accuracy_floor_fails_unless_accepted(demo_path, tmp_path, capsys):
    stack = tmp_path / "black.npy"
    frames = np.zeros((10, 128, 160), np.uint8)
    frames[[4, 9]] = np.random.default_rng(0).integers(0, 256, (2, 128, 160))  # held out: bright frames
    np.save(stack, frames)
    out = tmp_path / "bad.engine"
    # task floors judge INT8 (top-1 still agrees here); a floor the model cannot meet without FP16 layers:
    args = ["build", str(demo_path), "--int8", "--calib", str(stack), "-o", str(out), "--no-engine",
            "--int8-strategy", "float-first", "--accuracy-floor", "iou=0.999", "--no-mixed-precision"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "accuracy floor" in err and "best reached" in err and "map IoU" in err and "try " in err
    assert err.count("\n") == 1
    assert not list(tmp_path.glob("bad.*"))
    assert main([*args, "--accept-accuracy-drop"]) == 0
    assert json.loads((tmp_path / "bad.json").read_text())["accuracy"]["accepted_drop"] is True


def test_old_opset_is_upgraded_for_per_channel_qdq(photos, tmp_path):
    src = tmp_path / "old.onnx"
    onnx.save(gray_model("concat", h=128, w=160, opset=11), str(src))
    out = tmp_path / "old.engine"
    assert main(["build", str(src), "--int8", "--calib", str(photos), "-o", str(out), "--no-engine",
                 "--accept-accuracy-drop"]) == 0
    prepared = onnx.load(str(tmp_path / "old.prepared.onnx"))
    assert prepared.opset_import[0].version >= 13


def test_sidecar_contents(demo_path, photos, tmp_path):
    _, _, sidecar = _int8(demo_path, photos, tmp_path)
    side = json.loads(sidecar.read_text())
    import hashlib

    assert side["source"]["sha256"] == hashlib.sha256(demo_path.read_bytes()).hexdigest()
    assert side["input_contract"]["dtype"] == "uint8" and side["input_contract"]["channels"] == 1
    assert {o["name"] for o in side["outputs"]} == {"logits_out", "defect_map_out"}
    assert side["fold"]["folded_convs"] == ["stem_conv/pre_border"]  # by output: the folded conv, before its border term
    assert side["engine"] == {"built": False} and side["build_plan"]["trt_major"] in (10, 11)
    assert side["trtexec"] == "demo.int8.trtexec.sh"
    assert 0.5 < side["int8"]["int8_mac_share"] <= 1.0 and isinstance(side["int8"]["kept_float"], list)


@pytest.mark.parametrize("precision, major, strongly, fp16, int8", [
    ("fp16", 11, True, False, False), ("int8", 11, True, False, False),
    ("fp16", 10, True, False, False), ("int8", 10, False, True, True), ("fp32", 10, False, False, False),
    ("fp16", 8, False, True, False),
])
def test_loader_plan_per_tensorrt_version(precision, major, strongly, fp16, int8):
    """Polygraphy's loaders are built and inspected without TensorRT; calling them would build."""
    options = BuildOptions(output="m.engine", precision=precision, calib="c" if precision == "int8" else None,
                           shapes=(ShapeProfile.parse("image:1x1x480x640/1x1x1080x1920/1x1x2048x2448"),),
                           timing_cache="m.cache", opt_level=4, version_compatible=True)
    plan = plan_engine(options, "m.prepared.onnx", "m.engine", major)
    network, config, engine = loaders(plan)
    assert network.path == "m.prepared.onnx" and network.strongly_typed is strongly
    inner = config._config
    assert (inner.fp16, inner.int8) == (fp16, int8)
    assert inner.builder_optimization_level == 4 and inner.version_compatible is True
    assert inner.timing_cache_path == "m.cache" and engine.timing_cache_path == "m.cache"
    (profile,) = inner.profiles
    assert tuple(profile["image"].opt) == (1, 1, 1080, 1920)


def test_trtexec_script_per_version():
    o = BuildOptions(output="m.engine", precision="int8", calib="c",
                     shapes=(ShapeProfile.parse("image:1x1x480x640/1x1x1080x1920/1x1x2048x2448"),), workspace_mib=1024)
    args11 = plan_engine(o, "m.prepared.onnx", "m.engine", 11).trtexec_args()
    assert not {"--fp16", "--int8", "--stronglyTyped", "--best"} & set(args11)
    assert not any(a.startswith("--calib") for a in args11)
    assert "--minShapes=image:1x1x480x640" in args11 and "--memPoolSize=workspace:1024" in args11
    args10 = plan_engine(o, "m.prepared.onnx", "m.engine", 10).trtexec_args()
    assert {"--int8", "--fp16"} <= set(args10)
    dla = BuildOptions(output="m.engine", precision="fp16", dla_core=1, gpu_fallback=True,
                       shapes=(ShapeProfile.parse("image:1x1x480x640"),))
    args_dla = plan_engine(dla, "m.prepared.onnx", "m.engine", 10).trtexec_args()
    assert "--useDLACore=1" in args_dla and "--allowGPUFallback" in args_dla
    assert "--fp16" in args_dla and "--stronglyTyped" not in args_dla  # DLA before 11.4: weak typing, FP16
    script = plan_engine(o, "m.prepared.onnx", "m.engine", 11).trtexec_script()
    assert script.startswith("#!/usr/bin/env bash") and "/usr/src/tensorrt/bin/trtexec" in script


def test_dla_core_is_set_after_polygraphy_hard_codes_core_0():
    plan = plan_engine(BuildOptions(output="m.engine", dla_core=1, shapes=(ShapeProfile.parse("x:1x1x8x8"),)),
                       "a.onnx", "m.engine", 10)
    _, config, _ = loaders(plan)
    assert config._config.use_dla is True and callable(config._func)


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="int8"), "needs --calib"), (dict(output="m.trt"), "NAME.engine"),
    (dict(dla_core=0, shapes=(ShapeProfile.parse("x:1x1x8x8/1x1x16x16/1x1x32x32"),)), "dynamic shapes"),
    (dict(gpu_fallback=True), "only applies with --dla"), (dict(fp16_flag=True, trt_major=11), "no FP16 builder"),
])
def test_bad_build_options(kwargs, match):
    with pytest.raises(UsageError, match=match):
        BuildOptions(**{"output": "m.engine", **kwargs})


def test_bad_shapes_flag():
    for text in ("image:", "1x1x8x8", "image:4x1x8x8/1x1x8x8/1x1x8x8", "image:1x1x8x8/1x1x8x8", "image:1xax8x8"):
        with pytest.raises(UsageError):
            ShapeProfile.parse(text)


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_exits_4_and_writes_nothing(demo_path, tmp_path, capsys):
    out = tmp_path / "m.engine"
    assert main(["build", str(demo_path), "--fp16", "-o", str(out)]) == 4
    assert "--no-engine" in capsys.readouterr().err and not list(tmp_path.iterdir())


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_real_engine_builds_and_matches_the_original(demo_path, photos, tmp_path, precision):
    out = tmp_path / f"demo.{precision}.engine"
    args = ["build", str(demo_path), f"--{precision}", "-o", str(out)]
    if precision == "int8":
        args += ["--calib", str(photos)]
    assert main(args) == 0
    side = json.loads((tmp_path / f"demo.{precision}.json").read_text())
    assert side["engine"]["built"] and side["engine"]["tensorrt"]
    assert main(["compare", str(demo_path), str(out), "--images", str(photos)]) == 0
    shutil.rmtree(tmp_path)


def test_dynamic_model_needs_a_shape_profile(tmp_path, capsys):
    src = tmp_path / "dyn.onnx"
    onnx.save(demo_model(), str(src))  # 1 x 1 x height x width
    out = tmp_path / "d.engine"
    assert main(["build", str(src), "--fp16", "-o", str(out), "--no-engine"]) == 2
    assert "--shapes image:MIN/OPT/MAX" in capsys.readouterr().err
    assert main(["build", str(src), "--fp16", "-o", str(out), "--no-engine",
                 "--shapes", "image:1x1x96x128/1x1x128x160/1x1x192x256"]) == 0
    side = json.loads((tmp_path / "d.json").read_text())
    assert side["build_plan"]["profiles"][0]["opt"] == [1, 1, 128, 160]


def test_no_fold_sidecar_carries_a_full_contract_that_engine_reads(demo_path, tmp_path):
    """--no-fold keeps the model's own input; its sidecar contract is complete, as Engine and the C++ app
    need it (it used to be a bare feed without layout, channels or pixel range)."""
    from edgefold.compare.feeds import candidate_contract
    from edgefold.core.contract import InputContract
    from edgefold.graph.io import load_model

    out = tmp_path / "demo.engine"
    assert main(["build", str(demo_path), "--fp16", "--no-fold", "-o", str(out), "--no-engine"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["sidecar_version"] == 2
    c = sidecar["input_contract"]
    assert {"name", "dtype", "layout", "channels", "channel_order", "shape", "channel_axis", "pixel_range"} <= set(c)
    contract = InputContract.from_json(c)
    assert contract == candidate_contract(load_model(demo_path), str(demo_path))
    assert contract.channels == 1 and contract.layout == "NCHW" and contract.dtype == "uint8"
    frame = np.zeros(contract.shape[2:], np.uint8)
    assert contract.arrange(frame).shape == tuple(contract.shape)


def test_a_rebuild_for_deepstream_does_not_reuse_the_uint8_prepared_model(demo_path, photos, tmp_path):
    """--deepstream changes the engine's input (float32 raw pixels); the calibration cache must not hand back
    the uint8-input model of the previous build with the same frames."""
    out = tmp_path / "demo.int8.engine"
    args = ["build", str(demo_path), "--int8", "--calib", str(photos), "-o", str(out), "--no-engine"]
    assert main(args) == 0
    assert main([*args, "--deepstream"]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["reused_calibration"] is False and side["input_contract"]["dtype"] == "float32"


# ---- the engine that ships is measured: onnxruntime stands in for TensorRT through the runtime's Engine ----
class _CoarserEngine:
    """An engine maker whose engines are worse than the prepared model: the per-channel weight scales of every
    quantised layer are multiplied by ``factor`` before the (real) build - as when TensorRT picks kernels the
    simulation did not. Layers kept in float have no weight Q/DQ, so keeping more of them recovers."""

    def __init__(self, inner, factor: float) -> None:
        self.inner, self.factor, self.trt_major = inner, factor, inner.trt_major

    def describe(self) -> str:
        return self.inner.describe()

    def device_info(self) -> dict:
        return self.inner.device_info()

    def build(self, plan) -> bytes:
        m = onnx.load(plan.onnx_path)
        inits = {t.name: t for t in m.graph.initializer}
        for scale in {n.input[1] for n in m.graph.node if n.op_type == "QuantizeLinear"} & set(inits):
            a = onnx.numpy_helper.to_array(inits[scale])
            if a.ndim == 1:  # per-channel: a weight's
                inits[scale].CopyFrom(onnx.numpy_helper.from_array((a * self.factor).astype(a.dtype), scale))
        onnx.save(m, plan.onnx_path)
        return self.inner.build(plan)

    def load(self, engine: bytes, sidecar: dict):
        return self.inner.load(engine, sidecar)


class _NegatedEngine(_CoarserEngine):
    """Engines whose outputs are negated (a Neg after every output): no precision choice can meet the floor."""

    def build(self, plan) -> bytes:
        m = onnx.load(plan.onnx_path)
        for out in m.graph.output:
            m.graph.node.append(onnx.helper.make_node("Neg", [out.name + "_pos"], [out.name]))
            for n in m.graph.node[:-1]:
                n.output[:] = [o + "_pos" if o == out.name else o for o in n.output]
        onnx.save(m, plan.onnx_path)
        return self.inner.build(plan)


def _build_with(maker, demo_path, photos, out, **kw):
    from edgefold.deploy.pipeline import build

    return build(str(demo_path), BuildOptions(output=str(out), precision="int8", calib=str(photos), **kw), maker)


def test_without_tensorrt_the_sidecar_says_the_simulation_was_measured(demo_path, photos, tmp_path, capsys):
    code, _, sidecar = _int8(demo_path, photos, tmp_path)
    assert code == 0
    measured = json.loads(sidecar.read_text())["accuracy"]["measured_on"]
    assert measured == ("onnxruntime Q/DQ simulation (--no-engine)" if HAVE_TRT else
                        "onnxruntime Q/DQ simulation (no TensorRT here)")
    assert f"accuracy measured on: {measured}" in capsys.readouterr().out


def test_the_engine_is_measured_on_the_held_out_frames(demo_path, photos, tmp_path):
    from edgefold.runtime.makers import OnnxRuntimeMaker

    result = _build_with(OnnxRuntimeMaker(), demo_path, photos, tmp_path / "m.engine")
    side = result.sidecar
    assert side["accuracy"]["measured_on"] == "onnxruntime standing in for the engine (CPU)"
    assert side["accuracy"]["held_out"] == side["accuracy"]["simulation_held_out"]  # the same model, run again
    assert side["engine"]["built"] and len(side["engine"]["builds"]) == 1
    assert onnx.load(str(tmp_path / "m.engine")) == onnx.load(str(tmp_path / "m.prepared.onnx"))
    assert "engine build: 0 layers in float" in result.to_text()


def test_an_engine_worse_than_its_simulation_continues_the_search_on_the_engine(demo_path, photos, tmp_path):
    """The simulation meets the floor with INT8 everywhere; the engine does not, so layers are kept in float
    until the engine meets it - and the prepared model written is the one that engine was built from."""
    from edgefold.precision.mixed import quantized_layers
    from edgefold.runtime.makers import OnnxRuntimeMaker

    result = _build_with(_CoarserEngine(OnnxRuntimeMaker(), 12.0), demo_path, photos, tmp_path / "m.engine")
    side = result.sidecar
    builds = side["engine"]["builds"]
    assert not builds[0]["passed"] and builds[0]["float_layers"] == 0 and len(builds) > 1
    assert side["accuracy"]["passed"] and all(s["passed"] for s in side["accuracy"]["held_out"])
    kept = side["int8"]["kept_float"]
    assert kept and min(b["float_layers"] for b in builds if b["passed"]) == len(kept)
    prepared = onnx.load(str(tmp_path / "m.prepared.onnx"))
    assert not set(kept) & set(quantized_layers(prepared))
    text = result.to_text()
    assert "rebuild 1:" in text and "(timing cache)" in text and "engine rebuild" in text


def test_an_engine_that_cannot_meet_the_floor_exits_1_in_one_line(demo_path, photos, tmp_path):
    from edgefold.errors import VerificationFailed
    from edgefold.runtime.makers import OnnxRuntimeMaker

    with pytest.raises(VerificationFailed) as err:
        _build_with(_NegatedEngine(OnnxRuntimeMaker(), 1.0), demo_path, photos, tmp_path / "m.engine")
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 1
    assert "although the onnxruntime simulation met it" in message and "engine builds: 0 in float" in message
    assert not list(tmp_path.iterdir())


def test_fp16_engine_below_the_floor_is_refused_without_a_search(demo_path, tmp_path):
    from edgefold.deploy.pipeline import build
    from edgefold.errors import VerificationFailed
    from edgefold.runtime.makers import OnnxRuntimeMaker

    with pytest.raises(VerificationFailed, match="--fp32, or --accept-accuracy-drop"):
        build(str(demo_path), BuildOptions(output=str(tmp_path / "m.engine")), _NegatedEngine(OnnxRuntimeMaker(), 1))
    out = tmp_path / "a.engine"
    result = build(str(demo_path), BuildOptions(output=str(out), accept_accuracy_drop=True),
                   _NegatedEngine(OnnxRuntimeMaker(), 1))
    assert result.sidecar["accuracy"]["accepted_drop"] and out.is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed")
def test_tensorrt_engine_is_what_the_floor_is_measured_on(demo_path, photos, tmp_path):
    out = tmp_path / "demo.int8.engine"
    assert main(["build", str(demo_path), "--int8", "--calib", str(photos), "-o", str(out)]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["accuracy"]["measured_on"].startswith("engine (TensorRT ")
    assert side["engine"]["builds"][0]["seconds"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed")
def test_a_worse_tensorrt_engine_continues_the_search_on_tensorrt(demo_path, photos, tmp_path):
    from edgefold.runtime.makers import TensorRTMaker

    result = _build_with(_CoarserEngine(TensorRTMaker(), 12.0), demo_path, photos, tmp_path / "m.engine")
    builds = result.sidecar["engine"]["builds"]
    assert len(builds) > 1 and builds[-1]["seconds"] > 0 and result.sidecar["accuracy"]["passed"]
    assert result.sidecar["accuracy"]["measured_on"].startswith("engine (TensorRT ")


# ---- TensorRT 11 is strongly typed: what INT8 leaves unquantised is float16 in the ONNX it parses -----------
def _kept_layers(prepared: onnx.ModelProto, keys: list[str]) -> list[onnx.NodeProto]:
    from edgefold.graph.names import node_key

    return [n for n in prepared.graph.node if node_key(n) in keys and n.op_type in ("Conv", "Gemm", "MatMul")]


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    return {**{vi.name: vi.type.tensor_type.elem_type for vi in (*inferred.graph.value_info, *inferred.graph.input,
                                                                  *inferred.graph.output)},
            **{t.name: t.data_type for t in model.graph.initializer}}


@pytest.mark.parametrize("major,extra,dtype,said", [
    ("11", [], onnx.TensorProto.FLOAT16, "kept in FP16"),
    ("11", ["--keep-fp32"], onnx.TensorProto.FLOAT, "kept in FP32"),
    ("10", [], onnx.TensorProto.FLOAT, "kept in FP16"),  # float32 in the ONNX; TensorRT 10's FP16 flag
])
def test_kept_layers_are_written_in_the_precision_the_summary_says(demo_path, photos, tmp_path, capsys, major,
                                                                   extra, dtype, said):
    from edgefold.compare.feeds import candidate_feed
    from edgefold.compare.tolerance import tolerance_for
    from edgefold.deploy.prepare import prepare
    from edgefold.precision import accuracy
    from edgefold.precision.calib import load_calibration

    code, prepared_path, sidecar = _int8(demo_path, photos, tmp_path, "--trt-version", major,
                                         "--accuracy-floor", "iou=0.95", *extra)
    assert code == 0
    out = capsys.readouterr().out
    side = json.loads(sidecar.read_text())
    kept = side["int8"]["kept_float"]
    assert kept and f"{len(kept)} layers {said}" in out and side["int8"]["layers_by"] == "first output tensor"
    prepared = onnx.load(str(prepared_path))
    types = _types(prepared)
    assert len(_kept_layers(prepared, kept)) == len(kept)  # found by output tensor
    for node in _kept_layers(prepared, kept):
        assert types[node.input[1]] == dtype and types[node.input[0]] == dtype  # the weight and the activation
    # the sidecar's figures are those of exactly the model written
    feed, _, _ = candidate_feed(prepared, str(prepared_path))
    _, held = load_calibration(str(photos), 1, (128, 160), 300).split()
    prep = prepare(str(demo_path), BuildOptions(output=str(tmp_path / "r.engine"), precision="int8", calib=str(photos),
                                                accuracy_floor={"iou": 0.95}))
    again = accuracy.measure_against(prep.ref_held, prepared, feed, list(held.frames),
                                     tolerance_for("int8", {}, {}, {"iou": 0.95}))
    assert [s.to_json() for s in again] == side["accuracy"]["held_out"]


def test_keep_fp32_is_for_int8_and_drops_the_fp16_flag_on_tensorrt_10():
    with pytest.raises(UsageError, match="--keep-fp32 is for --int8"):
        BuildOptions(output="m.engine", precision="fp16", keep_fp32=True)
    plan = plan_engine(BuildOptions(output="m.engine", precision="int8", calib="c", keep_fp32=True), "m.onnx",
                       "m.engine", 10)
    assert plan.int8_flag and not plan.fp16_flag


# ---- --calib-method auto: coverage first among the candidates that meet the floor; failures say what failed --
def _candidate(label: str, iou: float, share: float):
    from edgefold.compare.tolerance import tolerance_for
    from edgefold.core.metrics import output_stats
    from edgefold.deploy.candidate import Candidate

    ref = np.zeros((1, 1, 10, 10), np.float32)
    ref[..., :, :5] = 1.0
    got = ref.copy()
    got[..., : round(10 * (1 - iou)), :5] = 0.0  # IoU = the rows kept
    stats = tolerance_for("int8", {}, {}, {"iou": 0.5}).judge(output_stats("map", [ref], [got], 0.5))
    strategy, method = label.split("/")
    return Candidate(strategy, onnx.ModelProto(), (), (stats,), calib_method=method, int8_share=share)


def test_auto_prefers_int8_coverage_among_the_candidates_that_meet_the_floor():
    """Issue 23: float-first with 29 % of MACs in INT8 (score 0.9994) was kept over recentre with 98 % (0.9993)."""
    from edgefold.deploy.choose import preference

    float_first = _candidate("float-first/percentile", 1.0, 0.292)
    recentre = _candidate("recentre/percentile", 0.9, 0.983)
    failing = _candidate("recentre/minmax", 0.3, 1.0)
    assert float_first.passed and recentre.passed and not failing.passed
    assert max([float_first, recentre, failing], key=preference) is recentre
    assert max([float_first, failing], key=preference) is float_first


def test_also_measured_lines_show_coverage_and_help_defines_the_score(demo_path, photos, tmp_path, capsys):
    assert _int8(demo_path, photos, tmp_path)[0] == 0
    also = [line for line in capsys.readouterr().out.splitlines() if "(also measured" in line]
    assert also and all("% of MACs" in line and "the floor" in line and "score" in line for line in also)
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "most INT8 MACs" in " ".join(capsys.readouterr().out.split())


def test_a_floor_nothing_meets_prints_the_failed_comparison_and_the_best_reached(demo_path, photos, tmp_path, capsys):
    import re

    code, _, _ = _int8(demo_path, photos, tmp_path, "--accuracy-floor", "iou=0.999")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("edgefold: error:")]
    assert code == 1 and len(err) == 1  # one line (the rest of stderr is the progress bars)
    err = err[0]
    failed = re.search(r"best reached \(([^)]*)\): output '(\w+)' map IoU ([0-9.]+) < 0\.999", err)
    assert failed, err
    assert ">= 0.999 for" not in err and "BELOW FLOOR (map IoU" not in err


# ---- build folds as fold does: the fold's flags, and a profile that fixes H x W fixes them for the fold -------
@pytest.fixture(scope="module")
def batched_path(tmp_path_factory):
    """The demo model with a dynamic batch as well as dynamic H x W (several cameras per call)."""
    m = demo_model()
    for vi in [m.graph.input[0], *m.graph.output]:
        d = vi.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = "batch"
    p = tmp_path_factory.mktemp("batched") / "cams.onnx"
    onnx.save(m, str(p))
    return p


def test_a_profile_varying_only_the_batch_fixes_h_and_w_for_the_fold_and_triton(batched_path, tmp_path):
    """Issue 23: --shapes image:1x1x480x640/4x.../8x... kept H and W dynamic (the slow dynamic border scheme,
    Triton dims 1,-1,-1)."""
    pytest.importorskip("tritonclient")
    out, report = tmp_path / "cams.engine", tmp_path / "fold.json"
    assert main(["build", str(batched_path), "--fp16", "--no-engine", "-o", str(out), "--report", str(report),
                 "--shapes", "image:1x1x96x128/4x1x96x128/8x1x96x128", "--triton", str(tmp_path / "repo")]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["input_contract"]["shape"][1:] == [1, 96, 128]
    convs = [c for chain in json.loads(report.read_text())["chains"] for c in chain["convs"]]
    assert convs and all(c["border_scheme"] != "dynamic" for c in convs), [c["border_scheme"] for c in convs]
    config = (tmp_path / "repo" / "cams" / "config.pbtxt").read_text()
    assert "max_batch_size: 8" in config and 'name: "image" data_type: TYPE_UINT8 dims: 1 dims: 96 dims: 128 }' in \
        " ".join(config.split())


def test_build_takes_the_folds_flags(demo_path, tmp_path, capsys):
    from edgefold.graph.io import load_model

    src = tmp_path / "dyn.onnx"
    onnx.save(demo_model(), str(src))
    out, report = tmp_path / "d.engine", tmp_path / "d.fold.json"
    assert main(["build", str(src), "--fp16", "--no-engine", "-o", str(out), "--input-size", "96x128",
                 "--input-name", "camera", "--border", "exact", "--report", str(report), "--verify-size", "96x128",
                 "--no-verify"]) == 0
    prepared = load_model(tmp_path / "d.prepared.onnx")
    assert prepared.graph.input[0].name == "camera"
    assert [d.dim_value for d in prepared.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 96, 128]
    assert json.loads(report.read_text())["chains"] and str(report) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = capsys.readouterr().out
    assert all(flag in text for flag in ("--input-size", "--border", "--input-name", "--report", "--verify-size",
                                         "--no-verify"))


def test_strongly_typed_builds_say_which_nodes_stay_fp32(demo_path, photos, tmp_path, capsys):
    """TensorRT 11 runs what the ONNX types say: an FP16 build leaves only the fold's border term in float32;
    the summary and sidecar count what runs in FP32. Weakly typed INT8 on 10.x has no such list."""
    out = tmp_path / "d.engine"
    assert main(["build", str(demo_path), "--fp16", "--no-engine", "--trt-version", "11", "-o", str(out)]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    helpers = json.loads(next(p.value for p in onnx.load(str(tmp_path / "d.prepared.onnx")).metadata_props
                              if p.key == "edgefold.helper_nodes"))
    assert 0 < sum(side["float32_ops"].values()) <= len(helpers)  # the border term only
    assert "run in FP32 as the ONNX types them" in capsys.readouterr().out
    code, _, sidecar = _int8(demo_path, photos, tmp_path, "--trt-version", "10")
    assert code == 0 and json.loads(sidecar.read_text())["float32_ops"] is None


def _typed_model(h: int = 32, w: int = 40) -> onnx.ModelProto:
    """Opset 13, ImageNet normalisation in the graph; between the convs the ops a detector has: Relu, Resize,
    Concat, Sigmoid; a gain whose output overflows FP16 and a Softmax, which must stay float32."""
    from edgefold.graph.builder import ModelBuilder
    from tests.models import normalise

    b = ModelBuilder(opset=13, seed=8)
    x = normalise(b, b.input("image", [1, 3, h, w]))
    y = b.op("Relu", [b.conv(x, 3, 8, k=3, stride=2)])
    z = b.op("Relu", [b.conv(y, 8, 8, k=3, stride=2)])
    scales = b.const(np.array([1, 1, 2, 2], np.float32), "scales", as_node=True)  # as paddle2onnx writes them
    up = b.op("Resize", [z, b.const(np.array([], np.float32), "roi"), scales], mode="nearest")
    cat = b.op("Concat", [y, up], axis=1)
    loud = b.op("Mul", [b.conv(cat, 16, 4, k=3), b.const(np.float32(1e5), "gain")])
    logits = b.op("Softmax", [b.op("Flatten", [b.op("GlobalAveragePool", [loud])])], axis=1)
    return b.model([b.op("Sigmoid", [b.conv(cat, 16, 1, k=3)]), logits])


@pytest.mark.parametrize("major,extra", [("11", []), ("11", ["--keep-fp32"]), ("10", [])])
def test_int8_for_tensorrt_11_writes_the_unquantised_rest_in_float16(tmp_path, capsys, major, extra):
    """TensorRT 11 runs what the ONNX types say: INT8 for 11 writes everything between the Q/DQ pairs in float16
    (Q/DQ scales float16, opset 19), except the documented float32 nodes, each counted with its reason in the
    sidecar and the summary; --keep-fp32 and TensorRT 10 keep the ONNX float32 as before."""
    from edgefold.precision.fp16 import FP32_REASONS

    src, frames = tmp_path / "m.onnx", tmp_path / "f.npy"
    onnx.save(_typed_model(), str(src))
    np.save(frames, np.random.default_rng(0).integers(0, 256, (6, 32, 40, 3)).astype(np.uint8))
    out = tmp_path / "m.engine"
    assert main(["build", str(src), "--rgb", "--int8", "--calib", str(frames), "-o", str(out),
                 "--no-engine", "--trt-version", major, "--no-mixed-precision", "--accept-accuracy-drop", *extra]) == 0
    text = capsys.readouterr().out
    side = json.loads((tmp_path / "m.json").read_text())
    prepared = onnx.load(str(tmp_path / "m.prepared.onnx"))
    types = _types(prepared)
    of = {n.op_type: types[n.output[0]] for n in prepared.graph.node}
    halves = [t for t in prepared.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    if major == "10":
        assert not halves and prepared.opset_import[0].version == 13 and side["precisions"] is None
        return
    census = side["precisions"]
    assert census["int8_layers"] > 0 and "run in FP32 as the ONNX types them" in text
    if extra:  # --keep-fp32: nothing in float16, every float node float32 as written
        assert not halves and census["fp16_nodes"] == 0
        assert set(census["fp32_why"]) <= {FP32_REASONS["unconverted"], FP32_REASONS["helper"]}
        return
    assert prepared.opset_import[0].version >= 19
    assert all(of[op] == onnx.TensorProto.FLOAT16 for op in ("Relu", "Resize", "Concat"))
    inits = {t.name: t for t in prepared.graph.initializer}
    for n in prepared.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert inits[n.input[1]].data_type == onnx.TensorProto.FLOAT16  # the scale
    why = census["fp32_why"]
    assert FP32_REASONS["unconverted"] not in why  # only documented float32 nodes are left
    assert why[FP32_REASONS["overflow"]].get("Mul") == 1 and why[FP32_REASONS["op"]] == {"Softmax": 1}
    assert census["fp32_nodes"] == sum(sum(v.values()) for v in why.values())
    assert f"{census['fp16_nodes']} FP16 nodes" in text and FP32_REASONS["overflow"] in text


@pytest.mark.parametrize("as_node", [True, False])
def test_fp16_keeps_what_reads_a_constant_beyond_fp16_in_float32(as_node):
    """PP-OCRv4's first FPN BatchNormalization has a running variance of 1e8 (a paddle2onnx Constant node): in
    float16 it is inf, and an FP16 build's text map agreed on 90 % of the pixels. A node reading such a constant
    (a node or an initializer, which the converter clamps to 65504) stays float32 and reads it exactly."""
    from edgefold.core.affine import ChannelAffine
    from edgefold.core.frames import InputFeed
    from edgefold.graph.builder import ModelBuilder
    from edgefold.precision.fp16 import census, to_fp16
    from tests.models import run

    b = ModelBuilder(seed=9)
    x = b.input("image", [1, 3, 12, 12])
    y = b.op("Mul", [b.conv(x, 3, 4, k=3), b.const(np.float32(5e3))])  # about 1e4, as the detector's FPN
    rng = np.random.default_rng(1)
    stats = [rng.uniform(0.5, 1.5, 4), rng.uniform(-0.5, 0.5, 4), rng.uniform(-500, 500, 4), rng.uniform(5e6, 1e8, 4)]
    y = b.op("BatchNormalization", [y, *(b.const(v.astype(np.float32), "bn", as_node) for v in stats)])
    model = b.model([b.conv(b.op("Relu", [y]), 4, 2, k=3)])
    feed = InputFeed("image", "float32", (1, 3, 12, 12), 1, ChannelAffine.identity(3))
    frames = [rng.uniform(0, 1, (3, 12, 12)).astype(np.float32) for _ in range(2)]
    half, hot = to_fp16(model, feed, frames)
    assert census(half)["fp32_why"] and census(half)["fp16_nodes"] >= 2  # the BatchNormalization alone in float32
    for f in frames:
        ref, got = run(model, {"image": f[None]})[0], run(half, {"image": f[None]})[0]
        assert np.abs(got - ref).max() <= 1e-2 * np.abs(ref).max()
