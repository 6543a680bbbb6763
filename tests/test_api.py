"""The README's Python API, as written there, in one process: twice, and after the imports a user makes."""
from __future__ import annotations

import onnx
import pytest

from edgefold import FoldOptions
from tests.models import gray_model


@pytest.fixture()
def model_path(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(gray_model(), path)
    return str(path)


def test_readme_snippet_works_twice_after_other_imports(model_path):
    import edgefold.compare  # noqa: F401 - importing subpackages must not shadow the API
    import edgefold.folding  # noqa: F401
    import edgefold.runtime  # noqa: F401

    for _ in range(2):
        folded, report = edgefold.fold(model_path, FoldOptions(channels="gray"))
        assert isinstance(folded, onnx.ModelProto)
        assert callable(edgefold.fold)
