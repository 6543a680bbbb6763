"""Every TensorRT name edgefold's build uses - its own calls and the Polygraphy configuration it requests
(precision and builder flags, profiles, DLA, timing cache, workspace, compatibility) - exists in the real
bindings of the TensorRT version the plan targets: 10.3 (JetPack 6) and 11.4 (strongly typed only).

The bindings and stand-in libraries come from .ci/trt_api.py (``./run test`` makes them before pytest);
tests/trt_api_probe.py runs under each version in a subprocess. Nothing is built or run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / ".trt-api"
DYNAMIC = "x:1x1x64x64/1x1x480x640/1x1x1080x1920"


def probe(major: int, cases: dict[str, dict]) -> dict[str, dict]:
    home = API / str(major)
    if not (home / "VERSION").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{home} is missing: ./run test makes it (.ci/trt_api.py) before the tests")
        pytest.skip(f"TensorRT {major} bindings not prepared: python .ci/trt_api.py .trt-api")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(home / "site")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(home / "lib")] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    payload = json.dumps({k: {"trt_major": major, **v} for k, v in cases.items()})
    with tempfile.TemporaryDirectory(prefix="edgefold-trt-api-") as cwd:  # Polygraphy locks the timing cache there
        done = subprocess.run([sys.executable, str(ROOT / "tests" / "trt_api_probe.py")], input=payload, env=env,
                              cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    verdict = json.loads(done.stdout)
    assert verdict["tensorrt"] == (home / "VERSION").read_text().strip()
    return verdict["cases"]


def build_matrix(major: int) -> dict[str, dict]:
    """The plans `edgefold build` can make for one target major (BuildOptions keyword arguments)."""
    int8 = {"precision": "int8", "calib": "frames/"}
    cases: dict[str, dict] = {p: {"precision": p} for p in ("fp32", "fp16")}
    cases["int8"] = int8
    cases["int8, every builder option"] = {**int8, "shapes": [DYNAMIC], "timing_cache": "t.cache",
                                           "workspace_mib": 1024, "opt_level": 5, "hardware_compat": "ampere+",
                                           "version_compatible": True}
    for precision in ("fp16", "int8"):
        extra = {"calib": "frames/"} if precision == "int8" else {}
        cases[f"{precision} on DLA 1, GPU fallback"] = {"precision": precision, **extra, "dla_core": 1,
                                                         "gpu_fallback": True, "shapes": ["x:1x1x480x640"]}
        cases[f"{precision} on DLA 0"] = {"precision": precision, **extra, "dla_core": 0, "shapes": ["x:1x1x480x640"]}
    if major < 11:
        cases["fp16 builder flag"] = {"precision": "fp16", "fp16_flag": True, "shapes": [DYNAMIC]}
    return cases


@pytest.mark.parametrize("major", [10, 11])
def test_every_plan_uses_only_what_its_tensorrt_has(major: int) -> None:
    results = probe(major, build_matrix(major))
    failed = {case: r["error"] for case, r in results.items() if "error" in r}
    assert not failed, f"TensorRT {major}: {failed}"
    everything = set().union(*(r["used"] for r in results.values()))
    # the probe did reach the calls that matter (a silently skipped config would prove nothing)
    assert {"IBuilderConfig.set_flag", "IOptimizationProfile.set_shape", "IBuilderConfig.set_memory_pool_limit",
            "IBuilderConfig.DLA_core", "IBuilderConfig.hardware_compatibility_level", "Builder.create_network",
            "OnnxParser.parse_from_file"} <= everything


def test_weak_typing_flags_are_refused_by_tensorrt_11_only() -> None:
    """The check has teeth: a plan that asks TensorRT 11 for the FP16 or INT8 builder flag (removed in 11.0)
    fails against the 11.4 bindings, and the same request passes against 10.3."""
    forced = {"fp16 flag": {"precision": "fp16", "force": {"fp16_flag": True, "strongly_typed": False}},
              "int8 flag": {"precision": "int8", "calib": "frames/",
                            "force": {"int8_flag": True, "strongly_typed": False}}}
    for case, r in probe(11, forced).items():
        assert "not available on TensorRT version 11.4" in r.get("error", ""), (case, r)
    assert all("used" in r for r in probe(10, forced).values())


def _trt_api_script():  # noqa: ANN202 - .ci/trt_api.py, imported by path (.ci is not a package)
    import importlib.util

    spec = importlib.util.spec_from_file_location("trt_api", ROOT / ".ci" / "trt_api.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stub_repair_makes_pybind11_signatures_valid_typed_python() -> None:
    """What pybind11-stubgen writes for TensorRT and Python or mypy reject, repaired without losing types."""
    import ast

    stub = ("from __future__ import annotations\n"
            "class ICudaEngine:\n    ...\nclass ParserError:\n    ...\nclass Weights:\n    ...\n"
            "class X:\n"
            "    engine: nvinfer1::ICudaEngine\n"
            "    def get_error(self, index: int) -> nvonnxparser::IParserError:\n        ...\n"
            "    def alloc(self, a: nvinfer1::v_1_0::IGpuAllocator, p: capsule) -> bool:\n        ...\n"
            "    def size(self, in: list[int], out: list[int]) -> int:\n        ...\n"
            "    def add_scale_nd(self, shift: Weights = None, channel_axis: int) -> None:\n        ...\n"
            "    def reg(self) -> detail::accessor<detail::accessor_policies::str_attr>:\n        ...\n"
            "bool: DataType\n")
    with pytest.raises(SyntaxError):
        ast.parse(stub)
    text, n = _trt_api_script().repair(stub, "stub.pyi")
    ast.parse(text)
    assert "engine: ICudaEngine" in text and "-> ParserError:" in text
    assert "a: typing.Any, p: typing.Any) -> builtins.bool:" in text  # no Python class; tensorrt.bool shadows
    assert "def size(self, in_: list[int], out: list[int]) -> int:" in text
    assert "shift: Weights = None, channel_axis: int = ...) -> None:" in text
    assert "def reg(self) -> typing.Any:" in text
    assert "\nbool: DataType\n" in text and "\nimport builtins\n" in text and "\nimport typing\n" in text
    assert n == 6
