"""onnxruntime behind the Engine API (CPU), so apps and tests run on machines without a GPU."""
from __future__ import annotations

import numpy as np
import onnx


class OrtBackend:
    def __init__(self, model: onnx.ModelProto, threads: int | None = None) -> None:
        import tempfile

        import onnxruntime as ort

        from edgefold.graph.io import model_bytes_or_path

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        self._tmp = tempfile.TemporaryDirectory(prefix="edgefold-rt-")
        self.session = ort.InferenceSession(model_bytes_or_path(model, self._tmp.name + "/"), so,
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def close(self) -> None:
        self._tmp.cleanup()
