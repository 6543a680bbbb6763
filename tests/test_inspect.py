"""edgefold inspect: the worked examples of the issue must come out exactly."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgefold.cli.main import main
from edgefold.graph.builder import ModelBuilder
from edgefold.inspect.count import inventory
from tests.models import gray_model


def _conv_model(*convs, h=64, w=64, cin=6, dynamic=False):
    b = ModelBuilder()
    x = b.input("input", [1, cin, "h" if dynamic else h, "w" if dynamic else w], np.float32)
    for c in convs:
        x = b.conv(x, **c)
    return b.model([x])


def _totals(model):
    t = inventory(model).total
    return t["params"], t["macs"]


@pytest.mark.parametrize("convs, params, macs", [
    ([dict(cin=6, cout=3, k=3, pad=1, bias=False)], 162, 663_552),
    ([dict(cin=6, cout=3, k=3, pad=1, group=3, bias=False)], 54, 221_184),
    ([dict(cin=6, cout=6, k=3, pad=1, group=6, bias=False), dict(cin=6, cout=3, k=1, pad=0, bias=False)],
     72, 294_912),
])
def test_worked_examples(convs, params, macs):
    assert _totals(_conv_model(*convs)) == (params, macs)


def test_strided_dilated_and_biased_convs():
    # stride 2: 32x32 outputs; dilation 2 with pad 2 keeps 64x64; bias adds C_out params, no MACs
    assert _totals(_conv_model(dict(cin=6, cout=4, k=3, stride=2, pad=1, bias=True))) == (6 * 4 * 9 + 4,
                                                                                        9 * 6 * 4 * 32 * 32)
    assert _totals(_conv_model(dict(cin=6, cout=4, k=3, dilation=2, pad=2, bias=False))) == (216, 9 * 6 * 4 * 64 * 64)


def test_gemm_and_matmul():
    b = ModelBuilder()
    x = b.input("x", [2, 128], np.float32)
    y = b.op("Gemm", [x, b.const(np.zeros((128, 10), np.float32)), b.const(np.zeros(10, np.float32))])
    z = b.op("MatMul", [y, b.const(np.zeros((10, 7), np.float32))])
    layers = inventory(b.model([z])).layers
    assert (layers[0].params, layers[0].macs) == (1290, 2 * 128 * 10)
    assert (layers[1].params, layers[1].macs) == (70, 2 * 10 * 7)


def test_pooling_elementwise_and_norm_are_flops_not_macs():
    b = ModelBuilder()
    x = b.input("x", [1, 4, 8, 8], np.float32)
    y = b.op("Relu", [x])
    y = b.op("BatchNormalization", [y] + [b.const(np.ones(4, np.float32)) for _ in range(4)])
    y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    layers = inventory(b.model([y])).layers
    assert [(la.macs, la.flops) for la in layers] == [(0, 256), (0, 512), (0, 4 * 4 * 4 * 4)]
    assert layers[1].params == 8  # scale + bias, running statistics are not parameters


def test_dynamic_shapes_resolved_with_shape_flag(tmp_path, capsys):
    p = tmp_path / "dyn.onnx"
    onnx.save(_conv_model(dict(cin=6, cout=3, k=3, pad=1, bias=False), dynamic=True), str(p))
    assert main(["inspect", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] is None
    assert main(["inspect", str(p), "--shape", "input:1x6x64x64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == {"params": 162, "macs": 663_552, "flops": 0}
    assert set(report["layers"][0]) == {"name", "op", "input_shapes", "output_shapes", "params", "macs", "flops",
                                          "output"}
    assert main(["inspect", str(p), "--shape", "nope:1x6x64x64"]) == 2


def test_against_folded_model_shows_a_third_of_the_first_layer(tmp_path, capsys):
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(gray_model("concat", h=64, w=64, k=7), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    assert main(["inspect", str(src), "--against", str(out)]) == 0
    text = capsys.readouterr().out
    assert "first conv: 'stem' W 16x3x7x7 -> 'stem' W 16x1x7x7" in text
    assert "(0.333x)" in text and "Concat" in text
    assert main(["inspect", str(src), "--against", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    stem_before = next(la for la in data["before"]["layers"] if la["name"] == "stem")
    stem_after = next(la for la in data["after"]["layers"] if la["name"] == "stem")
    assert stem_before["macs"] == 3 * stem_after["macs"]


def test_table_is_aligned_and_marks_top_consumers(tmp_path, capsys):
    p = tmp_path / "m.onnx"
    onnx.save(gray_model("concat", h=64, w=64), str(p))
    assert main(["inspect", str(p)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("*") for line in lines) and lines[-1].startswith("total:")
    assert len({line.index("MACs") for line in lines if "MACs" in line and "total" not in line}) == 1


def test_engine_without_tensorrt_exits_4(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except Exception:  # noqa: BLE001
        pass
    e = tmp_path / "m.engine"
    e.write_bytes(b"\0")
    assert main(["inspect", str(e)]) == 4
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_weights_behind_dequantize_linear_are_counted(tmp_path, capsys):
    """An INT8 prepared ONNX (explicit Q/DQ, as build writes it for TensorRT): the int8 weights behind each
    DequantizeLinear are the conv's parameters, as in the float model (scales and zero points are not)."""
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.input("input", [1, 3, 32, 32], np.float32)
    q = b.op("QuantizeLinear", [x, b.const(np.float32(0.02)), b.const(np.int8(0))])
    x = b.op("DequantizeLinear", [q, b.const(np.float32(0.02)), b.const(np.int8(0))])
    w8 = b.const(rng.integers(-127, 128, (16, 3, 3, 3)).astype(np.int8), "w_q")
    w = b.op("DequantizeLinear", [w8, b.const(np.full(16, 0.01, np.float32)), b.const(np.zeros(16, np.int8))],
             axis=0)
    y = b.op("Conv", [x, w, b.const(np.zeros(16, np.float32))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    path = tmp_path / "m.int8.prepared.onnx"
    onnx.save(b.model([y]), str(path))
    assert main(["inspect", str(path), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert total["params"] == 16 * 3 * 9 + 16 and total["macs"] == 16 * 27 * 32 * 32


def test_inspect_json_into_a_closed_pipe_exits_quietly(tmp_path):
    """`edgefold inspect --json big.onnx | head`: the reader closing the pipe is not an error of edgefold."""
    import subprocess
    import sys

    b = ModelBuilder()
    x = b.input("input", [1, 4, 8, 8], np.float32)
    for _ in range(600):
        x = b.op("Relu", [x])
    path = tmp_path / "long.onnx"
    onnx.save(b.model([x]), str(path))
    proc = subprocess.Popen([sys.executable, "-m", "edgefold", "inspect", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == "", err


@pytest.mark.parametrize("verb", ["compare", "inspect", "infer", "bench"])
def test_a_missing_engine_is_no_such_file_for_every_verb(verb, tmp_path, capsys):
    """Not 'TensorRT is not installed' for one verb and 'no such model' for another: exit 2, the path named."""
    missing = str(tmp_path / "nope.engine")
    src = tmp_path / "m.onnx"
    onnx.save(gray_model("concat"), str(src))
    argv = {"compare": [str(src), missing], "inspect": [missing], "infer": [missing, str(src)],
            "bench": [missing]}[verb]
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, as for every bad argument
        main([verb, *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such file" in err and "TensorRT" not in err, err


def _strips_fold(tmp_path):
    """A ResNet-style stem (conv -> ReLU -> max pool) folded with the edge-strip border scheme: the folded conv
    runs in five pieces (interior and four strips) that all read one stored weight."""
    from tests.models import normalise

    b = ModelBuilder(seed=0)
    x = b.op("Cast", [b.input("image", [1, 1, 224, 224], np.uint8)], to=onnx.TensorProto.FLOAT)
    y = b.conv(normalise(b, b.op("Concat", [x, x, x], axis=1)), 3, 16, k=7, stride=2, pad=3, name="stem")
    y = b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(b.model([y]), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    folded = onnx.load(str(out))
    convs = [n for n in folded.graph.node if n.op_type == "Conv" and "border" not in n.output[0]]
    assert len(convs) == 5 and len({n.input[1] for n in convs}) == 1  # the scheme this test is about
    return src, out, folded


def test_a_weight_read_by_several_convs_is_counted_once(tmp_path):
    """The strips' convs share the folded stem's weight: the model stores it once, so its parameters are counted
    once (they were counted per conv: 'model params' grew 2.3x for a fold that shrinks the stem)."""
    _, _, folded = _strips_fold(tmp_path)
    stored = sum(int(np.prod(t.dims)) for t in folded.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    inv = inventory(folded)
    assert inv.total["params"] <= stored
    assert inv.total["params"] == sum(int(np.prod(t.dims)) for t in folded.graph.initializer
                                      if any(t.name in n.input[1:3] for n in folded.graph.node
                                             if n.op_type == "Conv"))


def test_against_counts_every_piece_of_a_first_conv_split_into_strips(tmp_path, capsys):
    """inspect --against printed the interior piece alone as the folded first layer's MACs (0.913x for a fold
    that costs 1.03x): the pieces that read the same weight are that layer."""
    src, out, folded = _strips_fold(tmp_path)
    assert main(["inspect", str(src), "--against", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    weight = next(n.input[1] for n in folded.graph.node if n.op_type == "Conv" and "border" not in n.output[0])
    pieces = [la for la in data["after"]["layers"] if la["op"] == "Conv" and la["input_shapes"][1] == [16, 1, 7, 7]]
    stem_before = next(la for la in data["before"]["layers"] if la["name"] == "stem")
    piece_macs = sum(la["macs"] for la in pieces)
    assert len(pieces) == 5 and weight
    assert main(["inspect", str(src), "--against", str(out)]) == 0
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if "first-layer MACs" in x)
    from edgefold.inspect.table import human

    assert human(piece_macs) in line and f"({piece_macs / stem_before['macs']:.3f}x)" in line, line
    assert "in 5 convs" in text


def test_against_a_camera_format_fold_lists_only_preprocessing_and_counts_every_piece(tmp_path, capsys):
    """A BayerRG8 fold rewrites the stem into a conv on the mosaic plus demosaiced edge strips: --against listed
    the stem conv and its ReLU as 'preprocessing removed' and gave the interior piece alone as the first layer."""
    from tests.models import normalise

    b = ModelBuilder(seed=0)
    x = b.op("Cast", [b.input("image", [1, 3, 96, 96], np.uint8)], to=onnx.TensorProto.FLOAT)
    y = b.conv(normalise(b, x), 3, 16, k=7, stride=2, pad=3, name="stem")
    y = b.op("MaxPool", [b.op("Relu", [y], name="stem_relu")], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    src, out = tmp_path / "m.onnx", tmp_path / "m.bayer.onnx"
    onnx.save(b.model([y]), str(src))
    assert main(["fold", str(src), "-o", str(out), "--pixel-format", "BayerRG8", "-q"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(src), "--against", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["op"] for r in data["removed"]} <= {"Cast", "Div", "Sub"}, data["removed"]
    folded = onnx.load(str(out))
    pieces = json.loads(next(p.value for p in folded.metadata_props if p.key == "edgefold.folded_convs"))
    macs = sum(la["macs"] for la in data["after"]["layers"] if la["output"] in pieces)
    assert len(pieces) > 1
    assert main(["inspect", str(src), "--against", str(out)]) == 0
    from edgefold.inspect.table import human

    line = next(x for x in capsys.readouterr().out.splitlines() if "first-layer MACs" in x)
    assert line.split("->")[1].split("(")[0].strip() == human(macs), line


def test_dynamic_dims_print_as_question_marks_not_glued_names(tmp_path, capsys):
    """Exporters name dynamic dims ('batch', 'unk__0', 'Gemmlogits_dim_0'): the output column glued them into
    'batchx16xunk__0xunk__1'; a dim that is not a number prints as '?', as MACs that depend on it do."""
    p = tmp_path / "dyn.onnx"
    b = ModelBuilder()
    x = b.input("input", ["batch", 6, "unk__0", "unk__1"], np.float32)
    onnx.save(b.model([b.conv(x, 6, 3, k=3, pad=1, bias=False)]), str(p))
    assert main(["inspect", str(p)]) == 0
    text = capsys.readouterr().out
    assert "?x3x?x?" in text and "unk__" not in text and "batch" not in text, text
