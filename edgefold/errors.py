"""Exceptions with the fixed exit codes every verb uses.

0 ok, 1 mismatch / verification failed, 2 usage, 3 unsupported graph, 4 missing TensorRT / build failure,
5 internal error (a bug in edgefold), 6 out of memory (a model or frame too large for this machine),
7 a camera or stream lost mid-run (``edgefold run``: results so far kept).
Messages are one line that names the file, node or tensor and says what to do next.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3
EXIT_NO_TENSORRT = 4
EXIT_INTERNAL = 5  # a bug in edgefold: the message says so and asks for the model
EXIT_RESOURCES = 6  # out of memory: a resource limit of this machine, not a bug
EXIT_SOURCE_LOST = 7  # a camera or stream stopped delivering mid-run; the results so far are kept

# how onnxruntime (its arena, or a std::bad_alloc it passes on) says an allocation failed
_OUT_OF_MEMORY = ("Failed to allocate memory", "bad_alloc", "Out of memory", "out of memory")


class EdgefoldError(Exception):
    exit_code = EXIT_USAGE


class UsageError(EdgefoldError):
    """Bad flags, missing or unreadable files, contradictory options."""

    exit_code = EXIT_USAGE


class UnsupportedGraph(EdgefoldError):
    """The model cannot be folded exactly; nothing is written."""

    exit_code = EXIT_UNSUPPORTED


class VerificationFailed(EdgefoldError):
    """Two models that should agree do not; carries the report that says by how much and where."""

    exit_code = EXIT_MISMATCH

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class MissingTensorRT(EdgefoldError):
    """TensorRT (or CUDA) is missing, or cannot build the engine."""

    exit_code = EXIT_NO_TENSORRT


class EngineMismatch(MissingTensorRT):
    """The engine was built for another TensorRT version or GPU, or cannot be deserialised here: rebuild it on
    this device (exit 4)."""


class DeviceError(MissingTensorRT):
    """CUDA or TensorRT failed while running (exit 4): the device, not the input."""


class ResourceLimit(EdgefoldError):
    """This machine ran out of memory: a smaller frame size, fewer calibration frames or a larger machine."""

    exit_code = EXIT_RESOURCES


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it, also behind an edgefold error that reports it) is an allocation
    failure: Python's MemoryError (numpy's too) or onnxruntime's failure to allocate a buffer."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or (not isinstance(e, EdgefoldError) and any(m in str(e) for m in _OUT_OF_MEMORY)):
            return True
        e = e.__cause__ or e.__context__
    return False


class SourceLost(EdgefoldError):
    """A camera or stream that delivered frames stopped (unplugged, killed, network gone): exit 7, and
    ``edgefold run`` keeps what it wrote up to then."""

    exit_code = EXIT_SOURCE_LOST


# every exception edgefold raises on purpose, with its exit code (tests/test_errors.py checks the raise sites)
EXIT_CODES: dict[type[EdgefoldError], int] = {
    UsageError: EXIT_USAGE, UnsupportedGraph: EXIT_UNSUPPORTED, VerificationFailed: EXIT_MISMATCH,
    MissingTensorRT: EXIT_NO_TENSORRT, EngineMismatch: EXIT_NO_TENSORRT, DeviceError: EXIT_NO_TENSORRT,
    ResourceLimit: EXIT_RESOURCES, SourceLost: EXIT_SOURCE_LOST,
}
