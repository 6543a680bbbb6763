"""``Engine``: one API over a TensorRT engine (with its sidecar) and an ONNX model (onnxruntime)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from edgefold.errors import MissingTensorRT, UsageError
from edgefold.runtime.frames import arrange


class EngineMismatch(MissingTensorRT):
    """The engine was built for another TensorRT version or GPU (exit 4): rebuild it on this device."""


def _onnx_contract(path: Path) -> tuple[dict, onnx.ModelProto]:
    from edgefold.compare import candidate_feed
    from edgefold.graph.io import load_model

    model = load_model(path)
    meta = {p.key: p.value for p in model.metadata_props}
    contracts = json.loads(meta.get("edgefold.input_contracts", "[]"))
    if contracts:
        return contracts[0], model
    feed, order, pixel_max = candidate_feed(model, str(path))
    layout = {3: "NHWC", -1: "NHW"}.get(feed.channel_axis, "NCHW")
    contract = {"name": feed.name, "dtype": feed.dtype, "layout": layout, "channels": feed.affine.in_channels,
                "channel_order": order, "shape": list(feed.shape), "channel_axis": feed.channel_axis,
                "pixel_range": [0, pixel_max]}
    return contract, model


class Engine:
    """Load once, allocate once, ``infer(frame)`` many times. A context manager frees everything."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such model or engine")
        if self.path.suffix in (".engine", ".plan", ".trt"):
            from edgefold.runtime.trt_backend import TrtBackend

            sidecar_path = self.path.with_suffix(".json")
            if not sidecar_path.is_file():
                raise UsageError(f"{self.path}: its sidecar {sidecar_path.name} is missing; build engines with "
                                 f"`edgefold build` and copy NAME.json with NAME.engine")
            self.sidecar = json.loads(sidecar_path.read_text())
            self.contract = self.sidecar["input_contract"]
            self._backend: object = TrtBackend(self.path, self.sidecar)
            self.backend_name = "tensorrt"
        else:
            from edgefold.runtime.ort_backend import OrtBackend

            self.contract, model = _onnx_contract(self.path)
            self.sidecar = {}
            self._backend = OrtBackend(model, threads)
            self.backend_name = "onnxruntime"
        self.output_names: list[str] = self._backend.output_names  # type: ignore[attr-defined]

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return arrange(frame, self.contract)

    def infer(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """Raw frame in host memory -> named outputs in host memory."""
        return self.run(self.prepare(frame))

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """An input tensor already arranged as the contract says."""
        return self._backend.run({self.contract["name"]: tensor})  # type: ignore[attr-defined]

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
