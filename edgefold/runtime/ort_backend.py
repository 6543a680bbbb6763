"""onnxruntime behind the Engine API (CPU), so apps and tests run on machines without a GPU. onnxruntime reads a
C-contiguous input of the model's dtype in place, from any host memory: frames need no memory of its own."""
from __future__ import annotations

import numpy as np
import onnx


class OrtBackend:
    def __init__(self, model: onnx.ModelProto, threads: int | None = None) -> None:
        from edgefold.backends.ort import session

        self.session = session(model, optimize=True, threads=threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def host_memory(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of host memory (uint8) for frames: plain numpy memory, 64-byte aligned."""
        return aligned(nbytes)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def close(self) -> None:
        pass  # the session is freed with the object


def aligned(nbytes: int, alignment: int = 64) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose first byte is ``alignment``-aligned (SIMD loads, cache lines)."""
    block = np.empty(nbytes + alignment, np.uint8)
    start = -block.ctypes.data % alignment
    return block[start:start + nbytes]
