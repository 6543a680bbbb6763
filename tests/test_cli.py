"""The command line as a user meets it: exit codes, one-line errors, reports, no partial files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.folding import ops
from edgefold.folding.plan import BorderScheme
from edgefold.graph.builder import ModelBuilder
from tests.models import assert_same, gray_frame, gray_model, head

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_path(tmp_path):
    p = tmp_path / "model.onnx"
    onnx.save(gray_model("concat", h="h", w="w"), str(p))
    return p


def test_fold_writes_model_and_report(model_path, tmp_path, capsys):
    out, rep = tmp_path / "folded.onnx", tmp_path / "fold.json"
    assert main(["fold", str(model_path), "-o", str(out), "--report", str(rep)]) == 0
    text = capsys.readouterr().out
    assert "removed 5 nodes" in text and "16x3x7x7 -> 16x1x7x7" in text and "PASS" in text
    report = json.loads(rep.read_text())
    chain = report["chains"][0]
    assert report["exact"] is True and report["verification"]["passed"] is True
    assert {n["op"] for n in chain["removed_nodes"]} == {"Cast", "Concat", "Div", "Sub"}
    assert chain["contract"] == {"name": "image", "dtype": "uint8", "layout": "NCHW", "channels": 1,
                                 "channel_order": "gray", "shape": [1, 1, "h", "w"], "channel_axis": 1,
                                 "pixel_range": [0.0, 255.0]}
    conv = chain["convs"][0]
    assert conv["old_weight_shape"] == [16, 3, 7, 7] and conv["new_weight_shape"] == [16, 1, 7, 7]
    assert conv["border_scheme"] == "dynamic-separable"
    assert np.asarray(conv["affine"]["matrix"]).shape == (3, 1)
    m, f = onnx.load(str(model_path)), onnx.load(str(out))
    x = gray_frame(21, 30)
    assert_same(m, f, {"image": x}, {"image": x})


def test_unsupported_graph_exit_3_one_line_no_output(tmp_path, capsys):
    b = ModelBuilder()
    x = b.input("image", [1, 1, 16, 16], np.float32)
    x = b.op("Relu", [b.op("Concat", [x, x, x], axis=1)], name="bad_relu")
    src = tmp_path / "m.onnx"
    onnx.save(b.model([head(b, b.conv(x, 3, 8, k=3), 8)]), str(src))
    out = tmp_path / "out.onnx"
    assert main(["fold", str(src), "-o", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'bad_relu' (Relu)" in err[0]
    assert not out.exists() and not list(tmp_path.glob(".edgefold-*"))


@pytest.mark.parametrize("setup, code", [
    (lambda d: d / "missing.onnx", 2),
    (lambda d: (d / "notes.onnx").write_text("hello") and d / "notes.onnx", 2),
])
def test_bad_input_files(tmp_path, setup, code, capsys):
    src = setup(tmp_path)
    assert main(["fold", str(src), "-o", str(tmp_path / "o.onnx")]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(src) in err


def test_refuses_to_overwrite_the_input(model_path, capsys):
    before = model_path.read_bytes()
    assert main(["fold", str(model_path), "-o", str(model_path)]) == 2
    assert model_path.read_bytes() == before


def test_usage_errors_exit_2(model_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fold", str(model_path), "-o", str(tmp_path / "o.onnx"), "--gray", "--rgb"])
    assert e.value.code == 2
    assert main(["fold", str(model_path), "-o", str(tmp_path / "o.onnx"), "--mean", "1,2"]) == 2


def test_verification_failure_exit_1_and_nothing_written(model_path, tmp_path, monkeypatch, capsys):
    """The safety net: a fold that drops the border term but claims to be exact must be caught."""
    real = ops.border.plan_conv

    def broken(*args):
        args = list(args)
        args[7] = "approx"  # border_mode
        fold = real(*args)
        return type(fold)(**{**fold.__dict__, "border": BorderScheme.DYNAMIC_SEPARABLE})

    monkeypatch.setattr(ops.border, "plan_conv", broken)
    out, rep = tmp_path / "folded.onnx", tmp_path / "fold.json"
    assert main(["fold", str(model_path), "-o", str(out), "--report", str(rep)]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "border ring" in err and "nothing written" in err
    assert json.loads(rep.read_text())["verification"]["passed"] is False


def test_border_approx_reports_the_error_it_leaves(model_path, tmp_path, capsys):
    rep = tmp_path / "fold.json"
    assert main(["fold", str(model_path), "-o", str(tmp_path / "a.onnx"), "--border", "approx",
                 "--report", str(rep)]) == 0
    report = json.loads(rep.read_text())
    assert report["exact"] is False
    worst = max(report["verification"]["outputs"], key=lambda o: o["max_abs"])
    assert worst["border_max"] > 1e-2  # the error is real and shown ...
    assert "APPROXIMATE" in capsys.readouterr().out


def test_external_data_outside_the_model_folder_is_refused(tmp_path, capsys):
    m = gray_model("concat")
    onnx.save(m, str(tmp_path / "big.onnx"), save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    raw = onnx.load(str(tmp_path / "big.onnx"), load_external_data=False)
    for t in raw.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/passwd"
    onnx.save(raw, str(tmp_path / "evil.onnx"))
    assert main(["fold", str(tmp_path / "evil.onnx"), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "outside the model's folder" in capsys.readouterr().err


def test_model_with_external_data_folds(tmp_path):
    m = gray_model("concat")
    onnx.save(gray_model("concat"), str(tmp_path / "ext.onnx"), save_as_external_data=True,
              location="ext.onnx.data", size_threshold=0)
    assert main(["fold", str(tmp_path / "ext.onnx"), "-o", str(tmp_path / "f.onnx"), "-q"]) == 0
    x = gray_frame(40, 52)
    assert_same(m, onnx.load(str(tmp_path / "f.onnx")), {"image": x}, {"image": x})


def test_module_entry_point_and_help():
    r = subprocess.run([sys.executable, "-m", "edgefold", "fold", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--border" in r.stdout


def test_readme_demo_command_runs(tmp_path):
    """The README's main job exactly as the README gives it: ./run demo (set-up included, idempotent)."""
    r = subprocess.run([str(ROOT / "run"), "demo", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and "top-1 class" in r.stdout
    assert (tmp_path / "demo_classifier.folded.onnx").exists() and (tmp_path / "fold.json").exists()


def test_readme_states_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "./run demo" in readme and "./run test" in readme
    assert "./run test" in (ROOT / ".ci" / "run").read_text()


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("make", [
    lambda m: m.SerializeToString()[: len(m.SerializeToString()) // 2],  # truncated download
    lambda m: bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),  # random bytes
    lambda m: b"",  # empty file
])
def test_malformed_files_fail_with_one_line_exit_2(tmp_path, capsys, make):
    p = _write(tmp_path, "bad.onnx", make(gray_model("concat")))
    assert main(["fold", str(p), "-o", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.onnx" in err and not (tmp_path / "o.onnx").exists()


def test_invalid_graph_is_refused_by_the_checker(tmp_path, capsys):
    m = gray_model("concat")
    stem = next(n for n in m.graph.node if n.name == "stem")
    stem.input[1] = "no_such_weight"
    p = tmp_path / "broken.onnx"
    onnx.save(m, str(p))
    assert main(["fold", str(p), "-o", str(tmp_path / "o.onnx")]) == 2
    assert "reads tensor 'no_such_weight' which no node, input or initializer produces" in capsys.readouterr().err


def test_huge_static_input_is_refused_cleanly(tmp_path, capsys):
    p = tmp_path / "huge.onnx"
    onnx.save(gray_model("concat", h=40000, w=40000), str(p))
    assert main(["fold", str(p), "-o", str(tmp_path / "o.onnx")]) == 3
    assert "--no-verify" in capsys.readouterr().err


def test_unexpected_errors_are_one_line_exit_5(model_path, tmp_path, monkeypatch, capsys):
    import edgefold.folding.apply as apply_module

    def boom(*args, **kwargs):
        raise KeyError("simulated bug")

    monkeypatch.setattr(apply_module, "apply_plan", boom)
    assert main(["fold", str(model_path), "-o", str(tmp_path / "o.onnx")]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (KeyError" in err and not (tmp_path / "o.onnx").exists()


def test_models_too_large_for_one_protobuf_take_the_external_data_path(tmp_path, monkeypatch):
    """The > 2 GB path, exercised by lowering the threshold: the self-check loads from files, the folded model
    is written with its NAME.data beside it, and it loads back equal."""
    import edgefold.graph.io as io_module

    monkeypatch.setattr(io_module, "EXTERNAL_DATA_THRESHOLD", 1000)
    m = gray_model("concat")
    src = tmp_path / "big.onnx"
    onnx.save(m, str(src), save_as_external_data=True, location="big.onnx.data", size_threshold=0)
    out = tmp_path / "big.folded.onnx"
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    assert (tmp_path / "big.folded.onnx.data").is_file()
    x = gray_frame(40, 52)
    assert_same(gray_model("concat"), onnx.load(str(out)), {"image": x}, {"image": x})


def test_normalisation_flags_on_a_raw_pixel_input_say_to_drop_them(model_path, tmp_path, capsys):
    """A uint8 model that normalises in its graph, folded with --mean/--std as for a bare model: the error said
    what the flags mean but not what to do."""
    out = tmp_path / "o.onnx"
    assert main(["fold", str(model_path), "-o", str(out), "--gray", "--mean", "0.5", "--std", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "drop them" in err and "uint8" in err and not out.exists(), err


def test_a_model_without_a_conv_is_not_told_to_declare_a_normalisation(tmp_path, capsys):
    """An MLP: the refusal suggested --gray --mean --std --scale, which cannot help a model with no conv."""
    b = ModelBuilder(seed=0)
    x = b.input("x", [1, 3, 8, 8], np.float32)
    y = b.op("Gemm", [b.op("Flatten", [x]), b.const(np.ones((192, 4), np.float32))])
    src = tmp_path / "mlp.onnx"
    onnx.save(b.model([y]), str(src))
    for flags in ([], ["--gray", "--mean", "0.5", "--std", "0.5"]):
        assert main(["fold", str(src), "-o", str(tmp_path / "o.onnx"), *flags]) == 3
        err = capsys.readouterr().err
        assert "no input of this model reaches one" in err and "declare what it expects" not in err, err


def test_readme_demo_output_block_starts_as_the_demo_prints(tmp_path, capsys):
    """The README's 'Output (this machine)' block began at the fold summary; the demo prints a 'demo model:' line
    first."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("Files go to `out/demo/`. Output (this machine):", 1)[1].split("```")[1].strip().splitlines()
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert block[0].split(" (")[0] == printed[0].split(" (")[0].replace(str(tmp_path), "out/demo"), (block[0], printed[0])
    assert block[1] == printed[1]
