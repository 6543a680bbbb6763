"""A run never changes an input and writes all of its outputs or none (issue: reliability, data loss)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from tests.models import NORM_FLAGS, gray_model, head


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def model_dir(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    onnx.save(gray_model("concat"), str(src / "in.onnx"), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    (tmp_path / "out").mkdir()
    return tmp_path


def _exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code or 0)


def _one_line_usage(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("args", [
    ["-o", "{t}/out/o.onnx", "--report", "{t}/in/in.onnx"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/out/../in/in.onnx"],
    ["-o", "{t}/in/w.bin"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/in/w.bin"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/out/./o.onnx"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/out/o.onnx.data"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/missing/r.json"],
    ["-o", "{t}/out/o.onnx", "--report", "{t}/out"],
    ["-o", "{t}/out"],
    ["-o", ""],
    ["-o", "{t}/in/link.onnx"],
])
def test_fold_refuses_outputs_that_clash_before_any_work(model_dir, capsys, args):
    (model_dir / "in" / "link.onnx").symlink_to(model_dir / "in" / "in.onnx")
    before = _digest(model_dir)
    argv = ["fold", str(model_dir / "in" / "in.onnx")] + [a.format(t=model_dir) for a in args]
    assert main(argv) == 2
    assert "edgefold: error:" in _one_line_usage(capsys)
    assert _digest(model_dir) == before  # nothing changed, nothing written
    assert not list(model_dir.rglob(".edgefold-*"))


def test_special_files_are_never_replaced(model_dir, capsys):
    fifo = model_dir / "out" / "pipe"
    os.mkfifo(fifo)
    assert main(["fold", str(model_dir / "in" / "in.onnx"), "-o", str(fifo)]) == 2
    assert "not a regular file" in _one_line_usage(capsys)
    assert fifo.is_fifo()
    assert main(["fold", str(model_dir / "in" / "in.onnx"), "-o", os.devnull]) == 2
    assert Path(os.devnull).is_char_device()


def test_all_or_nothing_when_a_later_output_fails(model_dir, monkeypatch):
    """The report is staged after the model: a failure there must not leave the model behind."""
    from edgefold.graph.outputs import RunOutputs

    original = RunOutputs.stage_text

    def failing(self, path, text):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(RunOutputs, "stage_text", failing)
    out, rep = model_dir / "out" / "o.onnx", model_dir / "out" / "r.json"
    with pytest.raises(OSError):
        main(["fold", str(model_dir / "in" / "in.onnx"), "-o", str(out), "--report", str(rep), "-v"])
    monkeypatch.setattr(RunOutputs, "stage_text", original)
    assert not out.exists() and not rep.exists() and not list((model_dir / "out").iterdir())


def test_compare_report_cannot_name_an_input(model_dir, capsys):
    src = model_dir / "in" / "in.onnx"
    assert main(["fold", str(src), "-o", str(model_dir / "out" / "f.onnx"), "-q"]) == 0
    before = _digest(model_dir)
    assert main(["compare", str(src), str(model_dir / "out" / "f.onnx"), "--report", str(src)]) == 2
    assert main(["compare", str(src), str(model_dir / "out" / "f.onnx"), "--heatmap",
                 str(model_dir / "out" / "f.onnx")]) == 2
    assert _digest(model_dir) == before


def test_build_creates_its_output_folder(model_dir, capsys):
    out = model_dir / "engines" / "sub" / "m.engine"
    assert main(["build", str(model_dir / "in" / "in.onnx"), "--fp32", "--no-engine", "-o", str(out)]) == 0
    assert (out.parent / "m.prepared.onnx").is_file() and (out.parent / "m.json").is_file()


def test_build_refuses_a_calibration_stack_as_output(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(gray_model("concat"), str(src))
    stack = tmp_path / "m.json"
    np.save(tmp_path / "frames.npy", np.zeros((3, 40, 52), np.uint8))
    stack.write_text("{}")
    before = _digest(tmp_path)
    # NAME.json of -o m.engine is the model's own sidecar name; an input named so must not be replaced
    assert main(["build", str(src), "--int8", "--calib", str(stack), "--no-engine", "-o", str(tmp_path / "m.engine")]) == 2
    assert _digest(tmp_path) == before


@pytest.mark.parametrize("flags", [["--scale", "inf"], ["--scale", "nan"], ["--mean", "0,nan,0"], ["--std", "inf"]])
def test_non_finite_flags_are_usage_errors(tmp_path, capsys, flags):
    src = tmp_path / "m.onnx"
    onnx.save(_bare(), str(src))
    assert _exit(["fold", str(src), "-o", str(tmp_path / "o.onnx"), "--gray"] + flags) == 2
    assert "finite" in _one_line_usage(capsys)
    assert not (tmp_path / "o.onnx").exists()


def test_negative_values_are_taken_as_values(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(_bare(), str(src))
    assert main(["fold", str(src), "-o", str(tmp_path / "o.onnx"), "--gray", "--mean", "-1,-1,-1", "--std",
                 "-2,-2,-2", "-q"]) == 0


def _bare(weight_value: float | None = None) -> onnx.ModelProto:
    b = ModelBuilder(seed=3)
    x = b.input("image", [1, 3, 24, 32], np.float32)
    y = b.conv(x, 3, 8, k=3, pad=1, name="stem")
    model = b.model([head(b, y, 8)])
    if weight_value is not None:
        for t in model.graph.initializer:
            if t.dims == [8, 3, 3, 3]:
                w = onnx.numpy_helper.to_array(t).copy()
                w[0, 0, 0, 0] = weight_value
                t.CopyFrom(onnx.numpy_helper.from_array(w, t.name))
    return model


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_conv_weights_are_refused_by_name(tmp_path, capsys, value):
    src = tmp_path / "m.onnx"
    onnx.save(_bare(value), str(src))
    assert main(["fold", str(src), "-o", str(tmp_path / "o.onnx"), "--gray"] + NORM_FLAGS) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inf or NaN" in err and "'stem'" in err
    assert not (tmp_path / "o.onnx").exists()


def test_bad_flag_is_one_line_with_help_hint(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fold", "m.onnx", "--no-such-flag"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "see edgefold fold --help" in err
