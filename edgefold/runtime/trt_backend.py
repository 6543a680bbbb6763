"""TensorRT behind the Engine API: named I/O tensors, ``execute_async_v3``, one CUDA stream, pinned host
buffers and device buffers allocated once (and grown when a larger shape within the profile arrives).

Frames can live in the backend's own pinned host memory (``host_memory``: a camera's buffers are made over it);
an input that lies there is copied to the GPU straight from it, every other one through a pinned staging buffer.

CUDA through cuda-python (``cuda.bindings``, what NVIDIA's TensorRT 10/11 samples use) or pycuda where
only that is installed (common on Jetson). Runs only where TensorRT and a GPU exist: tested by the
``gpu``-marked tests; every TensorRT call is type-checked against the TensorRT stubs in CI.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edgefold.backends.trt import import_tensorrt
from edgefold.errors import DeviceError, EngineMismatch, MissingTensorRT, UsageError


class _CudaPython:
    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.rt = cudart
        self._host: set[int] = set()  # pinned blocks by address

    def _ok(self, result):  # noqa: ANN001, ANN202 - cuda-python returns (error, *values)
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DeviceError(f"CUDA error {err}")
        return values[0] if len(values) == 1 else values

    def stream(self) -> int:
        return int(self._ok(self.rt.cudaStreamCreate()))

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self._ok(self.rt.cudaFree(ptr))

    def pinned(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        ptr = int(self._ok(self.rt.cudaMallocHost(nbytes)))
        arr = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(ptr)).view(dtype)[: int(np.prod(shape))]
        self._host.add(ptr)  # by address: the array handed out is a reshaped view, another object
        return arr.reshape(shape)

    def free_pinned(self, arr: np.ndarray) -> None:
        ptr = int(arr.ctypes.data)
        if ptr in self._host:
            self._host.discard(ptr)
            self._ok(self.rt.cudaFreeHost(ptr))

    def htod(self, dst: int, host: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, kind, stream))

    def dtoh(self, host: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, kind, stream))

    def sync(self, stream: int) -> None:
        self._ok(self.rt.cudaStreamSynchronize(stream))

    def destroy(self, stream: int) -> None:
        self._ok(self.rt.cudaStreamDestroy(stream))

    def compute_capability(self) -> str:
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        return f"{props.major}.{props.minor}"


class _PyCuda:
    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401 - creates the context
        import pycuda.driver as cuda

        self.cuda = cuda
        self._streams: dict[int, object] = {}
        self._allocs: dict[int, object] = {}

    def stream(self) -> int:
        s = self.cuda.Stream()
        self._streams[s.handle] = s
        return int(s.handle)

    def malloc(self, nbytes: int) -> int:
        alloc = self.cuda.mem_alloc(max(1, nbytes))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocs.pop(ptr, None)
        if alloc is not None:
            alloc.free()  # type: ignore[attr-defined]

    def pinned(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def free_pinned(self, arr: np.ndarray) -> None:
        pass  # freed with the array

    def htod(self, dst: int, host: np.ndarray, stream: int) -> None:
        self.cuda.memcpy_htod_async(dst, host, self._streams[stream])

    def dtoh(self, host: np.ndarray, src: int, stream: int) -> None:
        self.cuda.memcpy_dtoh_async(host, src, self._streams[stream])

    def sync(self, stream: int) -> None:
        self._streams[stream].synchronize()  # type: ignore[attr-defined]

    def destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def compute_capability(self) -> str:
        major, minor = self.cuda.Device(0).compute_capability()
        return f"{major}.{minor}"


def cuda_api():  # noqa: ANN201
    for cls in (_CudaPython, _PyCuda):
        try:
            return cls()
        except ImportError:
            continue
    raise MissingTensorRT("neither cuda-python nor pycuda is installed: `pip install cuda-python` matching the "
                          "CUDA major of this machine (Jetson: see jetson/README.md)")


def lies_in(x: np.ndarray, blocks: list[np.ndarray]) -> bool:
    """Whether every byte of ``x`` lies inside one of ``blocks``."""
    start = x.ctypes.data
    end = start + x.nbytes
    return any(b.ctypes.data <= start and end <= b.ctypes.data + b.nbytes for b in blocks)


def copies_in_place(x: np.ndarray, blocks: list[np.ndarray]) -> bool:
    """Whether ``x`` can go to the GPU straight from where it lies: inside one of ``blocks`` and C-contiguous
    (a copy reads ``x.nbytes`` from its first byte: a strided view would send other bytes)."""
    return bool(x.flags.c_contiguous) and lies_in(x, blocks)


def check_sidecar(sidecar: dict, trt_version: str, compute_capability: str | None) -> None:
    """Engines are specific to the TensorRT version and the GPU: say so clearly before deserialising."""

    built = sidecar.get("engine", {})
    plan = sidecar.get("build_plan", {})
    want = built.get("tensorrt")
    if want and not plan.get("version_compatible") and want.split(".")[:2] != trt_version.split(".")[:2]:
        raise EngineMismatch(f"engine built with TensorRT {want}, this machine runs {trt_version}: rebuild it here "
                             f"(edgefold build, or the NAME.trtexec.sh next to it)")
    cc = built.get("compute_capability")
    if cc and compute_capability and cc != compute_capability and not plan.get("hardware_compat"):
        raise EngineMismatch(f"engine built for a GPU of compute capability {cc} ({built.get('gpu', '?')}), this "
                             f"GPU is {compute_capability}: rebuild it on this device")


class TrtBackend:
    def __init__(self, path: Path, sidecar: dict) -> None:
        import_tensorrt()
        import tensorrt as trt

        self.cuda = cuda_api()
        check_sidecar(sidecar, trt.__version__, self.cuda.compute_capability())
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineMismatch(f"{path}: TensorRT {trt.__version__} cannot deserialise this engine; rebuild it here")
        self.engine: trt.ICudaEngine = engine
        self.context: trt.IExecutionContext = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.stream = self.cuda.stream()
        self.device: dict[str, tuple[int, int]] = {}  # name -> (pointer, capacity in bytes)
        self.host: dict[str, np.ndarray] = {}
        self.frame_memory: list[np.ndarray] = []  # pinned blocks handed out by host_memory, freed at close

    def host_memory(self, nbytes: int) -> np.ndarray:
        """``nbytes`` of pinned host memory (uint8) for frames: an input lying in it is copied to the GPU as it is."""
        block = self.cuda.pinned((max(1, nbytes),), np.dtype(np.uint8))
        self.frame_memory.append(block)
        return block[:nbytes]

    def _buffer(self, name: str, shape: tuple) -> tuple[int, np.ndarray]:
        """Device and pinned host buffers per tensor, grown to the largest shape seen: after one call at the
        largest batch (cameras), every smaller batch reuses them without an allocation."""
        nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
        ptr, capacity = self.device.get(name, (0, -1))
        if nbytes > capacity:
            if ptr:
                self.cuda.free(ptr)
                self.cuda.free_pinned(self.host[name])
            ptr, capacity = self.cuda.malloc(nbytes), nbytes
            self.device[name] = (ptr, capacity)
            self.host[name] = self.cuda.pinned((max(1, nbytes // self.dtypes[name].itemsize),), self.dtypes[name])
        view = self.host[name].reshape(-1)[: int(np.prod(shape))].reshape(shape)
        self.context.set_tensor_address(name, ptr)
        return ptr, view

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self.inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            if not self.context.set_input_shape(name, tuple(x.shape)):
                raise UsageError(f"input '{name}' shape {x.shape} is outside the engine's profile; feed frames of "
                                 f"the sizes it was built for (its sidecar's build_plan) or rebuild with --shapes")
            ptr, host = self._buffer(name, tuple(x.shape))
            if copies_in_place(x, self.frame_memory):  # the frame is in our pinned memory: no staging copy
                host = x
            else:
                host[...] = x
            self.cuda.htod(ptr, host, self.stream)
        outs = {}
        for name in self.output_names:
            dims = self.context.get_tensor_shape(name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            outs[name] = self._buffer(name, shape)
        if not self.context.execute_async_v3(self.stream):
            raise DeviceError("TensorRT execution failed (execute_async_v3 returned false)")
        for ptr, host in outs.values():
            self.cuda.dtoh(host, ptr, self.stream)
        self.cuda.sync(self.stream)
        return {name: host.copy() for name, (_, host) in outs.items()}

    def close(self) -> None:
        for name, (ptr, _) in self.device.items():
            self.cuda.free(ptr)
            self.cuda.free_pinned(self.host[name])
        self.device.clear()
        self.host.clear()
        for block in self.frame_memory:
            self.cuda.free_pinned(block)
        self.frame_memory.clear()
        self.cuda.destroy(self.stream)
        del self.context, self.engine, self.runtime
