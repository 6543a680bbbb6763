"""``Engine``: one API over a TensorRT engine (with its sidecar) and an ONNX model (onnxruntime)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edgefold.core.contract import InputContract, Sidecar
from edgefold.errors import EngineMismatch, UsageError  # noqa: F401 - EngineMismatch is re-exported


def _onnx_contracts(path: Path) -> tuple[list[InputContract], onnx.ModelProto]:
    """Every camera input's contract (a folded multi-camera model has several; others have one), and the model."""
    from edgefold.compare.feeds import candidate_contract, plain_contract
    from edgefold.core.contract import contracts_of
    from edgefold.graph.io import load_model

    model = load_model(path)
    inits = {t.name for t in model.graph.initializer}
    images = [vi for vi in model.graph.input
              if vi.name not in inits and len(vi.type.tensor_type.shape.dim) in (3, 4)]
    if not contracts_of(model) and len(images) > 1:  # an unfolded model with several cameras: each fed as it is
        return [plain_contract(vi) for vi in images], model
    return contracts_of(model) or [candidate_contract(model, str(path))], model


def _side_inputs(model: onnx.ModelProto, cameras: set[str]) -> list[str]:
    """Inputs that are not camera frames (a gain, a mask): the caller feeds them by name."""
    inits = {t.name for t in model.graph.initializer}
    return [vi.name for vi in model.graph.input if vi.name not in inits and vi.name not in cameras]


class Engine:
    """Load once, allocate once, ``infer(frame)`` many times. A context manager frees everything."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.info: Sidecar | None = None  # the engine's sidecar (None for an ONNX model)
        self.side_inputs: list[str] = []  # inputs that are not camera frames, fed by name to infer()
        if not self.path.is_file():  # a folder exists: 'no such file' sent the user looking for a typo
            raise UsageError(f"{self.path} is a folder, not a file" if self.path.is_dir() else
                             f"{self.path}: no such file")
        if self.path.suffix in (".engine", ".plan", ".trt"):
            from edgefold.runtime.trt_backend import TrtBackend

            sidecar_path = self.path.with_suffix(".json")
            if not sidecar_path.is_file():
                raise UsageError(f"{self.path}: its sidecar {sidecar_path.name} is missing; build engines with "
                                 f"`edgefold build` and copy NAME.json with NAME.engine")
            self.info = Sidecar.read(sidecar_path)
            self.sidecar = self.info.data
            self.contracts = [self.info.contract]
            self._backend: object = TrtBackend(self.path, self.sidecar)
            self.backend_name = "tensorrt"
        else:
            from edgefold.runtime.ort_backend import OrtBackend

            self.contracts, model = _onnx_contracts(self.path)
            self.side_inputs = _side_inputs(model, {c.name for c in self.contracts})
            self.sidecar = {}
            self._backend = OrtBackend(model, threads)
            self.backend_name = "onnxruntime"
        self.contract = self.contracts[0]  # the (first) camera input
        self.output_names: list[str] = self._backend.output_names  # type: ignore[attr-defined]

    @property
    def max_batch(self) -> int | None:
        """Frames per call: the contract's fixed batch, the engine profile's largest, or None (any number)."""
        if self.info is not None:
            return self.info.max_batch
        batch = self.contract.shape[0]
        return batch if isinstance(batch, int) else None

    def host_memory(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of host memory (uint8) for frames, which the backend reads as it is: TensorRT's pinned memory
        (copied to the GPU straight from it), aligned numpy memory for onnxruntime (read in place). It lives until
        ``close()``."""
        return self._backend.host_memory(nbytes)  # type: ignore[attr-defined]

    def feed_copy(self, shape: tuple[int, ...], dtype: np.dtype, *, in_host_memory: bool) -> str | None:
        """Why one frame of ``shape`` and ``dtype`` is copied on its way into the backend; None where it is read as
        it is (``in_host_memory``: the frame lies in ``host_memory()``)."""
        if len(self.contracts) > 1 or self.side_inputs:
            return "the model takes several inputs, fed by name"
        c = self.contract
        probe = np.empty(shape, dtype)  # not touched: only its layout is looked at
        try:
            x = c.arrange(probe)
        except UsageError as err:  # the run stops at the first frame, with this error
            return str(err)
        if not (np.shares_memory(x, probe) and x.flags.c_contiguous):
            return (f"the engine reads {c.dtype} {c.layout} ('{c.name}'), not the camera's {np.dtype(dtype)} buffer: "
                    f"each frame is arranged into a new tensor")
        if self.backend_name == "tensorrt" and not in_host_memory:
            return "the frames are not in the engine's pinned host memory: TensorRT stages each one"
        return None

    def prepare(self, frame: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """A raw frame, a batch (N x H x W ...), or a list of frames - one per camera - as the input tensor."""
        return self._arrange(self.contract, frame)

    def _arrange(self, contract: InputContract, frame: np.ndarray | list[np.ndarray]) -> np.ndarray:
        if isinstance(frame, (list, tuple)):
            frame = np.stack([np.asarray(f) for f in frame])
        x = contract.arrange(frame)
        fixed = isinstance(contract.shape[0], int)
        limit = self.max_batch
        if limit is not None and (x.shape[0] != limit if fixed else x.shape[0] > limit):
            raise UsageError(f"{x.shape[0]} frames for input '{contract.name}', which takes "
                             f"{'exactly' if fixed else 'at most'} {limit} per call"
                             + (("; build with --shapes NAME:1x.../Nx... for several cameras" if self.info else
                                 "; export the model with a dynamic batch (or fold a batch-N model) for several "
                                 "cameras") if fixed else ""))
        return x

    def infer(self, frame: np.ndarray | list[np.ndarray] | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw frame(s) in host memory -> named outputs in host memory (batch first: one row per camera). A model
        with several camera inputs (or inputs that are not frames) takes ``{input name: frame or tensor}``."""
        return self.run(self.prepare_all(frame))

    def prepare_all(self, frame: np.ndarray | list[np.ndarray] | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every input's tensor: camera inputs arranged as their contracts say, other inputs as given."""
        names = [c.name for c in self.contracts] + self.side_inputs
        if not isinstance(frame, dict):
            if len(names) > 1:
                raise UsageError(f"the model takes {len(names)} inputs ({', '.join(repr(n) for n in names)}); "
                                 f"pass {{name: frame}} for each")
            frame = {self.contract.name: frame}  # type: ignore[dict-item]
        missing = [n for n in names if n not in frame]
        unknown = [n for n in frame if n not in names]
        if missing or unknown:
            raise UsageError(f"inputs {', '.join(repr(n) for n in names)} expected"
                             + (f"; missing {', '.join(repr(n) for n in missing)}" if missing else "")
                             + (f"; no input named {', '.join(repr(n) for n in unknown)}" if unknown else ""))
        tensors = {c.name: self._arrange(c, frame[c.name]) for c in self.contracts}
        tensors.update({n: np.asarray(frame[n]) for n in self.side_inputs})
        return tensors

    def run(self, tensor: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Input tensors already arranged as the contracts say: one array for a one-input model, else by name."""
        feeds = tensor if isinstance(tensor, dict) else {self.contract.name: tensor}
        return self._backend.run(feeds)  # type: ignore[attr-defined]

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
