"""Bad input, as an adversarial user gives it (issue 14): every case exits with its documented code (never
5, the internal-error code), one line on stderr naming the file or node and the fix, no output file, and
every input byte-for-byte unchanged."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from tests.models import F, gray_model


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def _external(tmp: Path, model: onnx.ModelProto | None = None) -> Path:
    """A gray model saved with its weights in w.bin beside it."""
    path = tmp / "in" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(model or gray_model("concat"), str(path), save_as_external_data=True, location="w.bin",
              size_threshold=0)
    return path


def _edit_external(path: Path, key: str, value: str, which: int = 0) -> None:
    m = onnx.load(str(path), load_external_data=False)
    tensors = [t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    entry = next((e for e in tensors[which].external_data if e.key == key), None)
    if entry is None:
        entry = tensors[which].external_data.add()
        entry.key = key
    entry.value = value
    path.write_bytes(m.SerializeToString())


def _save(tmp: Path, model: onnx.ModelProto, name: str = "m.onnx") -> Path:
    path = tmp / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


# ---- the cases: each returns the command line; {out} is a fresh output folder --------------------------
def _edited(key: str, value: str):  # noqa: ANN202
    """A case: the gray model with external data whose first tensor's ``key`` entry is ``value``."""
    def build(tmp):  # noqa: ANN001, ANN202
        p = _external(tmp)
        _edit_external(p, key, value)
        return ["fold", str(p), "-o", "{out}/o.onnx"]
    return build


def ext_directory(tmp):
    p = _external(tmp)
    (p.parent / "adir").mkdir()
    _edit_external(p, "location", "adir")
    return ["fold", str(p), "-o", "{out}/o.onnx"]


def ext_fifo(tmp):
    p = _external(tmp)
    os.mkfifo(p.parent / "pipe")
    _edit_external(p, "location", "pipe")
    return ["fold", str(p), "-o", "{out}/o.onnx"]


def _relocate_all(p: Path, location: str) -> None:
    """Every external tensor of the model at ``p`` pointed at ``location``."""
    for i in range(sum(t.data_location == onnx.TensorProto.EXTERNAL
                       for t in onnx.load(str(p), load_external_data=False).graph.initializer)):
        _edit_external(p, "location", location, which=i)


def ext_symlink_inside(tmp):  # a symlink to a file in the same folder is fine: it must fold
    p = _external(tmp)
    (p.parent / "link.bin").symlink_to(p.parent / "w.bin")
    _relocate_all(p, "link.bin")
    return ["fold", str(p), "-o", "{out}/o.onnx"]


def ext_dotdot_inside(tmp):  # sub/../w.bin stays inside the folder: it must fold
    p = _external(tmp)
    (p.parent / "sub").mkdir()
    _relocate_all(p, "sub/../w.bin")
    return ["fold", str(p), "-o", "{out}/o.onnx"]


def _with_function(tmp, external: bool):
    """A model-local function whose Constant node keeps its value in an external file."""
    m = gray_model("concat")
    value = numpy_helper.from_array(np.ones(4, np.float32), "k")
    if external:
        value.data_location = onnx.TensorProto.EXTERNAL
        value.ClearField("raw_data")
        for k, v in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
            e = value.external_data.add()
            e.key, e.value = k, v
    fn = helper.make_function("local", "f", ["a"], ["b"],
                              [helper.make_node("Constant", [], ["k"], value=value),
                               helper.make_node("Add", ["a", "k"], ["b"])], [helper.make_opsetid("", 17)])
    m.functions.append(fn)
    m.opset_import.append(helper.make_opsetid("local", 1))
    return _save(tmp, m)


def ext_in_function(tmp):
    return ["fold", str(_with_function(tmp, True)), "-o", "{out}/o.onnx"]


def ext_in_tensors_attribute(tmp):
    m = gray_model("concat")
    t = numpy_helper.from_array(np.ones(4, np.float32), "k")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.ClearField("raw_data")
    e = t.external_data.add()
    e.key, e.value = "location", "/etc/passwd"
    m.graph.node[0].attribute.append(helper.make_attribute("extra", [t]))
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def bias_too_long(tmp):
    m = gray_model("concat")
    stem = next(n for n in m.graph.node if n.name == "stem")
    init = next(t for t in m.graph.initializer if t.name == stem.input[2])
    init.CopyFrom(numpy_helper.from_array(np.zeros(17, np.float32), init.name))
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx", "--no-verify"]


def zero_channels(tmp):
    return ["fold", str(_save(tmp, _zero_channel_model())), "-o", "{out}/o.onnx"]


def _zero_channel_model():
    m = gray_model("concat")
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 0
    return m


def opset7_dynamic(tmp):
    m = gray_model("concat", opset=7, dtype=np.float32)
    for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "hw"
    del m.graph.value_info[:]
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def dangling_tensor(tmp):
    m = gray_model("concat")
    m.graph.node[1].input[0] = "nowhere"
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def quantised(tmp):
    b = ModelBuilder(opset=17)
    x = b.input("image", [1, 3, 16, 16])
    q, scale, zp = b.op_n("DynamicQuantizeLinear", [x], 3)
    w = b.const(np.ones((4, 3, 3, 3), np.uint8))
    y = b.op("Cast", [b.op("ConvInteger", [q, w, zp], pads=[1, 1, 1, 1])], to=F)
    y = b.op("Mul", [y, scale])
    return ["fold", str(_save(tmp, b.model([y]))), "-o", "{out}/o.onnx"]


def ort_cannot_load_original(tmp):  # a node onnxruntime has no kernel for, behind the stem
    m = gray_model("concat", dtype=np.float32)
    last = m.graph.node[-1]
    last.domain = "com.example"
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def compare_reference_unloadable(tmp):
    good = _save(tmp, gray_model("concat", dtype=np.float32), "good.onnx")
    bad = gray_model("concat", dtype=np.float32)
    bad.graph.node[-1].domain = "com.example"
    bad.opset_import.append(helper.make_opsetid("com.example", 1))
    return ["compare", str(_save(tmp, bad, "ref.onnx")), str(good)]


def compare_rank3_reference(tmp):
    b = ModelBuilder()
    x = b.input("image", ["h", "w", 3])
    y = b.op("Transpose", [x], perm=[2, 0, 1])
    y = b.op("Unsqueeze", [y, b.const(np.array([0], np.int64))])
    ref = _save(tmp, b.model([b.conv(y, 3, 4)]), "ref.onnx")
    return ["compare", str(ref), str(_save(tmp, gray_model("concat", dtype=np.float32), "other.onnx"))]


def compare_different_input_shapes(tmp):
    a = _save(tmp, gray_model("concat", h=40, w=52, dtype=np.float32), "a.onnx")
    b = _save(tmp, gray_model("concat", h=32, w=48, dtype=np.float32), "b.onnx")
    return ["compare", str(a), str(b)]


def inspect_broken_external(tmp):
    return ["inspect", _edited("length", str(10**9))(tmp)[1]]


def nan_weights_compare(tmp):
    m = gray_model("concat", dtype=np.float32)
    head = next(t for t in m.graph.initializer if t.name == m.graph.node[-1].input[1]) \
        if len(m.graph.node[-1].input) > 1 else None
    arr = numpy_helper.to_array(head).copy()
    arr.flat[0] = np.nan
    head.CopyFrom(numpy_helper.from_array(arr, head.name))
    a = _save(tmp, m, "a.onnx")
    return ["compare", str(a), str(a)]


def nan_weights_fold(tmp):
    return ["fold", nan_weights_compare(tmp)[1], "-o", "{out}/o.onnx"]


def _stem_attr(name: str, edit):  # noqa: ANN001, ANN202
    """A gray model whose stem conv's attribute ``name`` is edited (found by fuzzing: internal errors)."""
    def build(tmp):  # noqa: ANN001, ANN202
        m = gray_model("concat")
        conv = next(n for n in m.graph.node if n.op_type == "Conv")
        edit(next(a for a in conv.attribute if a.name == name))
        return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]
    return build


def bn_params_for_other_channels(tmp):  # BatchNormalization with 8 values on a 3-channel tensor
    from tests.test_pixel_formats import _stem_then

    m = _stem_then("bn-relu-maxpool", 24, 32)
    next(n for n in m.graph.node if n.op_type == "BatchNormalization").input[0] = "image"
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx", "--rgb"]


def int8_input(tmp):
    m = gray_model("concat")
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT8
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx", "--input-dtype", "uint8"]


def _empty_tensor(name: str, dims: list[int]) -> onnx.TensorProto:
    t = onnx.TensorProto()
    t.name, t.data_type = name, onnx.TensorProto.FLOAT
    t.dims.extend(dims)
    return t


def empty_initializer(tmp):  # dims of 1e9 elements, no data: numpy_helper would fail to reshape it
    m = gray_model("concat")
    stem = next(n for n in m.graph.node if n.name == "stem")
    init = next(t for t in m.graph.initializer if t.name == stem.input[1])
    init.CopyFrom(_empty_tensor(init.name, [1000, 1000, 1000, 1]))
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def empty_constant(tmp):  # the same in a Constant node (paddle2onnx keeps weights there)
    m = gray_model("concat", as_node=True)
    node = next(n for n in m.graph.node if n.op_type == "Constant")
    node.attribute[0].t.CopyFrom(_empty_tensor("", [10**9]))
    return ["fold", str(_save(tmp, m)), "-o", "{out}/o.onnx"]


def short_float_data(tmp):  # 3 floats in float_data for a (16,) bias
    m = gray_model("concat")
    stem = next(n for n in m.graph.node if n.name == "stem")
    init = next(t for t in m.graph.initializer if t.name == stem.input[2])
    t = _empty_tensor(init.name, [16])
    t.float_data.extend([1.0, 2.0, 3.0])
    init.CopyFrom(t)
    return ["inspect", str(_save(tmp, m))]


CASES = {
    "empty_initializer": (empty_initializer, {2}, "holds no data"),
    "empty_constant": (empty_constant, {2}, "holds no data"),
    "short_float_data": (short_float_data, {2}, "values for shape"),
    # name: (builder, allowed exit codes, a word the message must contain)
    "conv_stride_zero": (_stem_attr("strides", lambda a: a.ints.__setitem__(0, 0)), {3}, "strides"),
    "conv_three_pads": (_stem_attr("pads", lambda a: a.ints.pop()), {3}, "pads"),
    "bn_params_for_other_channels": (bn_params_for_other_channels, {3}, "malformed"),
    "int8_input": (int8_input, {2}, "int8"),
    "ext_length_beyond_file": (_edited("length", str(10**9)), {2}, "w.bin"),
    "ext_offset_beyond_file": (_edited("offset", str(10**9)), {2}, "w.bin"),
    "ext_negative_offset": (_edited("offset", "-5"), {2}, "offset"),
    "ext_text_offset": (_edited("offset", "abc"), {2}, "offset"),
    "ext_model_itself": (_edited("location", "m.onnx"), {2}, "m.onnx"),
    "ext_nul_byte": (_edited("location", "w\x00.bin"), {2}, "location"),
    "ext_directory": (ext_directory, {2}, "not a regular file"),
    "ext_fifo": (ext_fifo, {2}, "not a regular file"),
    "ext_symlink_inside": (ext_symlink_inside, {0}, ""),
    "ext_dotdot_inside": (ext_dotdot_inside, {0}, ""),
    "ext_in_function": (ext_in_function, {2}, "outside the model's folder"),
    "ext_in_tensors_attribute": (ext_in_tensors_attribute, {2}, "outside the model's folder"),
    "bias_too_long": (bias_too_long, {2, 3}, "bias"),
    "zero_channels": (zero_channels, {2, 3}, "channel"),
    "opset7_dynamic": (opset7_dynamic, {0, 3}, ""),
    "dangling_tensor": (dangling_tensor, {2}, "nowhere"),
    "quantised": (quantised, {3}, "quantised"),
    "ort_cannot_load_original": (ort_cannot_load_original, {2, 3}, "original"),
    "compare_reference_unloadable": (compare_reference_unloadable, {2, 3}, "ref.onnx"),
    "compare_rank3_reference": (compare_rank3_reference, {2, 3}, "ref.onnx"),
    "compare_different_input_shapes": (compare_different_input_shapes, {2}, "shape"),
    "inspect_broken_external": (inspect_broken_external, {2}, "w.bin"),
    "nan_weights_compare": (nan_weights_compare, {2}, "NaN"),
    "nan_weights_fold": (nan_weights_fold, {3}, "NaN"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_line_a_documented_exit_and_no_output(case, tmp_path, capsys):
    build, codes, word = CASES[case]
    argv = build(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    before = _digest(tmp_path / "in")
    code = _run([a.format(out=out) for a in argv])
    err = capsys.readouterr().err
    assert code in codes, (code, err)
    if code != 0:
        assert err.count("\n") == 1 and err.startswith("edgefold: error: "), err
        assert word in err, err
        assert not any(out.iterdir()), list(out.iterdir())
    assert _digest(tmp_path / "in") == before


def test_an_output_path_through_a_file_is_one_usage_line(tmp_path, capsys):
    """--triton REPO where REPO is a file (found by an adversarial run: it was an internal error)."""
    src = tmp_path / "m.onnx"
    onnx.save(gray_model("concat"), str(src))
    (tmp_path / "afile").write_text("x")
    before = _digest(tmp_path)
    code = _run(["build", str(src), "-o", str(tmp_path / "e" / "m.engine"), "--no-engine", "--triton",
                 str(tmp_path / "afile")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a file, not a folder" in err, err
    assert _digest(tmp_path) == before and not (tmp_path / "e").exists()


def test_bench_batch_zero_is_a_usage_error(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(gray_model("concat"), str(src))
    assert _run(["bench", str(src), "--batch", "0"]) == 2
    assert "--batch needs" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["fold", "{d}", "-o", "{t}/x.onnx"],
                                  ["build", "{d}", "--no-engine", "-o", "{t}/e/x.engine"],
                                  ["run", "{d}", "--source", "{d}"],
                                  ["frontend", "dct", "-o", "{t}/x.onnx", "--model", "{d}"]],
                         ids=["fold", "build", "run", "frontend-dct"])
def test_a_folder_given_for_the_model_is_said_to_be_a_folder(verb, tmp_path, capsys):
    """As compare/infer/bench/inspect say it. run said 'DIR: no such file' (the folder exists), fold, build and
    frontend dct 'DIR: not a regular file'."""
    folder = tmp_path / "frames"
    folder.mkdir()
    assert main([a.replace("{d}", str(folder)).replace("{t}", str(tmp_path)) for a in verb]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder} is a folder, not a file" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]
