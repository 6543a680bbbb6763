"""``Engine``: one API over a TensorRT engine (with its sidecar) and an ONNX model (onnxruntime)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgefold.core.contract import InputContract, Sidecar
from edgefold.errors import EngineMismatch, UsageError  # noqa: F401 - EngineMismatch is re-exported


def _onnx_contract(path: Path) -> tuple[InputContract, onnx.ModelProto]:
    from edgefold.compare.feeds import candidate_contract
    from edgefold.graph.io import load_model

    model = load_model(path)
    return candidate_contract(model, str(path)), model


class Engine:
    """Load once, allocate once, ``infer(frame)`` many times. A context manager frees everything."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.info: Sidecar | None = None  # the engine's sidecar (None for an ONNX model)
        if not self.path.is_file():
            raise UsageError(f"{self.path}: no such model or engine")
        if self.path.suffix in (".engine", ".plan", ".trt"):
            from edgefold.runtime.trt_backend import TrtBackend

            sidecar_path = self.path.with_suffix(".json")
            if not sidecar_path.is_file():
                raise UsageError(f"{self.path}: its sidecar {sidecar_path.name} is missing; build engines with "
                                 f"`edgefold build` and copy NAME.json with NAME.engine")
            self.info = Sidecar.read(sidecar_path)
            self.sidecar = self.info.data
            self.contract = self.info.contract
            self._backend: object = TrtBackend(self.path, self.sidecar)
            self.backend_name = "tensorrt"
        else:
            from edgefold.runtime.ort_backend import OrtBackend

            self.contract, model = _onnx_contract(self.path)
            self.sidecar = {}
            self._backend = OrtBackend(model, threads)
            self.backend_name = "onnxruntime"
        self.output_names: list[str] = self._backend.output_names  # type: ignore[attr-defined]

    @property
    def max_batch(self) -> int | None:
        """Frames per call: the contract's fixed batch, the engine profile's largest, or None (any number)."""
        if self.info is not None:
            return self.info.max_batch
        batch = self.contract.shape[0]
        return batch if isinstance(batch, int) else None

    def prepare(self, frame: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """A raw frame, a batch (N x H x W ...), or a list of frames - one per camera - as the input tensor."""
        if isinstance(frame, (list, tuple)):
            frame = np.stack([np.asarray(f) for f in frame])
        x = self.contract.arrange(frame)
        fixed = isinstance(self.contract.shape[0], int)
        limit = self.max_batch
        if limit is not None and (x.shape[0] != limit if fixed else x.shape[0] > limit):
            raise UsageError(f"{x.shape[0]} frames for input '{self.contract.name}', which takes "
                             f"{'exactly' if fixed else 'at most'} {limit} per call"
                             + ("; build with --shapes NAME:1x.../Nx... for several cameras" if fixed else ""))
        return x

    def infer(self, frame: np.ndarray | list[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw frame(s) in host memory -> named outputs in host memory (batch first: one row per camera)."""
        return self.run(self.prepare(frame))

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """An input tensor already arranged as the contract says."""
        return self._backend.run({self.contract.name: tensor})  # type: ignore[attr-defined]

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
