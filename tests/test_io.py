"""Model files in and out without extra copies (issue 14, fold cost): external data written from a light
proto, the original proto untouched; onnxruntime gets larger models as mapped external data."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.folding import FoldOptions, fold
from edgefold.graph import io as graph_io
from tests.models import gray_model, run


def test_save_external_writes_an_equal_model_and_leaves_the_proto_unchanged(tmp_path):
    m = gray_model("concat", dtype=np.float32)
    before = m.SerializeToString()
    graph_io.save_external(m, tmp_path / "m.onnx", "m.onnx.data", threshold=64)
    assert m.SerializeToString() == before
    back = onnx.load(str(tmp_path / "m.onnx"))
    assert any(t.data_location == onnx.TensorProto.EXTERNAL
               for t in onnx.load(str(tmp_path / "m.onnx"), load_external_data=False).graph.initializer)
    x = np.random.default_rng(0).random((1, 1, 40, 52)).astype(np.float32)
    for a, b in zip(run(m, {"image": x}), run(back, {"image": x})):
        np.testing.assert_array_equal(a, b)


def test_fold_verifies_through_mapped_external_data(monkeypatch):
    """Above MAP_THRESHOLD, both self-check sessions load files with external data; the fold is the same."""
    m = gray_model("concat")
    expected, _ = fold(m)
    monkeypatch.setattr(graph_io, "MAP_THRESHOLD", 0)
    folded, report = fold(m, FoldOptions())
    assert report.verification.passed
    assert folded.SerializeToString() == expected.SerializeToString()


def test_a_model_loaded_by_fold_is_folded_in_place_but_a_caller_s_model_is_not(tmp_path):
    m = gray_model("concat")
    before = m.SerializeToString()
    fold(m)
    assert m.SerializeToString() == before  # the caller's proto: never changed
    onnx.save(m, str(tmp_path / "m.onnx"))
    folded, _ = fold(str(tmp_path / "m.onnx"))
    assert folded.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 1
