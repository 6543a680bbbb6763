"""Exceptions with the fixed exit codes every verb uses.

0 ok, 1 mismatch / verification failed, 2 usage, 3 unsupported graph, 4 missing TensorRT / build failure,
5 internal error (a bug in edgefold), 6 a camera or stream lost mid-run (``edgefold run``: results so far kept).
Messages are one line that names the file, node or tensor and says what to do next.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3
EXIT_NO_TENSORRT = 4
EXIT_INTERNAL = 5  # a bug in edgefold: the message says so and asks for the model
EXIT_SOURCE_LOST = 6  # a camera or stream stopped delivering mid-run; the results so far are kept


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


class SourceLost(EdgefoldError):
    """A camera or stream that delivered frames stopped (unplugged, killed, network gone): exit 6, and
    ``edgefold run`` keeps what it wrote up to then."""

    exit_code = EXIT_SOURCE_LOST


# every exception edgefold raises on purpose, with its exit code (tests/test_errors.py checks the raise sites)
EXIT_CODES: dict[type[EdgefoldError], int] = {
    UsageError: EXIT_USAGE, UnsupportedGraph: EXIT_UNSUPPORTED, VerificationFailed: EXIT_MISMATCH,
    MissingTensorRT: EXIT_NO_TENSORRT, EngineMismatch: EXIT_NO_TENSORRT, DeviceError: EXIT_NO_TENSORRT,
    SourceLost: EXIT_SOURCE_LOST,
}
