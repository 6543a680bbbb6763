"""Fixtures several test modules share."""
from __future__ import annotations

import onnx
import pytest

from edgefold.cli.main import main
from tests.models import gray_model


@pytest.fixture
def folded_pair(tmp_path):
    """(original, folded) paths: a 48x64 gray model with its preprocessing in the graph, folded by the CLI."""
    src, out = tmp_path / "m.onnx", tmp_path / "f.onnx"
    onnx.save(gray_model("concat", h=48, w=64), str(src))
    assert main(["fold", str(src), "-o", str(out), "-q"]) == 0
    return src, out
