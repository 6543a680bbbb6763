"""Out of memory is a resource limit of the machine, with its own documented exit code - not 'a bug in
edgefold, please report it' (exit 5)."""
from __future__ import annotations

import numpy as np
import onnx

from edgefold.cli.main import main
from edgefold.errors import EXIT_CODES, EXIT_RESOURCES, ResourceLimit
from edgefold.graph.builder import ModelBuilder


def test_onnxruntime_failing_to_allocate_exits_6(tmp_path, capsys):
    """A model whose output needs ~275 GB (a 4096x upsampling): onnxruntime's arena cannot allocate it."""
    from PIL import Image

    b = ModelBuilder()
    x = b.op("Cast", [b.input("image", [1, 1, 64, 64], np.uint8)], to=onnx.TensorProto.FLOAT)
    y = b.op("Resize", [x, "", b.const(np.array([1, 1, 4096, 4096], np.float32))], mode="nearest")
    path = tmp_path / "huge.onnx"
    onnx.save(b.model([y]), str(path))
    img = tmp_path / "f.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(img)
    assert main(["infer", str(path), str(img)]) == EXIT_RESOURCES
    err = capsys.readouterr().err
    assert "out of memory" in err and "report" not in err and len(err.strip().splitlines()) == 1, err


def test_memory_error_anywhere_exits_6(tmp_path, capsys, monkeypatch):
    import edgefold.folding

    def explode(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(edgefold.folding, "fold", explode)
    src = tmp_path / "m.onnx"
    from tests.models import gray_model

    onnx.save(gray_model("concat"), str(src))
    assert main(["fold", str(src), "-o", str(tmp_path / "o.onnx")]) == EXIT_RESOURCES
    assert "out of memory" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()
    assert EXIT_CODES[ResourceLimit] == EXIT_RESOURCES == 6
