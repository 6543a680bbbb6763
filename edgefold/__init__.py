"""edgefold: fold camera preprocessing into the first convolution, build TensorRT engines for Jetson."""
from __future__ import annotations

from edgefold.version import __version__  # noqa: F401 - the public version


def fold(model_or_path, options=None):  # noqa: ANN001, ANN201 - thin re-export, documented in edgefold.folding
    from edgefold.folding import fold as _fold

    return _fold(model_or_path, options)


def __getattr__(name: str):  # noqa: ANN202
    if name == "FoldOptions":
        from edgefold.folding.options import FoldOptions

        return FoldOptions
    raise AttributeError(name)
