"""onnxruntime behind the Engine API (CPU), so apps and tests run on machines without a GPU."""
from __future__ import annotations

import numpy as np
import onnx


class OrtBackend:
    def __init__(self, model: onnx.ModelProto, threads: int | None = None) -> None:
        from edgefold.backends.ort import session

        self.session = session(model, optimize=True, threads=threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def close(self) -> None:
        pass  # the session is freed with the object
