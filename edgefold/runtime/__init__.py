"""Running folded models and engines: ``Engine`` takes raw camera frames and returns named outputs.

    from edgefold.runtime import Engine
    with Engine("engines/model.int8.engine") as engine:      # or a .onnx model (onnxruntime, CPU)
        outputs = engine.infer(gray_frame_u8)                # H x W, or N x H x W; colour: (N x) H x W x 3
"""
from edgefold.runtime.engine import Engine, EngineMismatch

__all__ = ["Engine", "EngineMismatch"]
