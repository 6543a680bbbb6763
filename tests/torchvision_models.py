"""torchvision's Inception v3 and GoogLeNet model definitions, loaded without torchvision's C extension.

PyPI's torchvision wheel cannot load its compiled ops beside the CPU build of torch this machine has
(``operator torchvision::nms does not exist``), and ``import torchvision`` registers those ops first. The
model files need none of them: they are imported as modules of a bare ``torchvision`` package whose
``__init__`` is not run. Weights are never downloaded (``weights=None``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import pytest


def classifier(name: str, **kwargs):  # noqa: ANN201
    """``inception_v3`` or ``googlenet`` from torchvision, built with random weights."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        pytest.skip("torchvision is not installed (./run test installs it)")
    root = os.path.dirname(spec.origin)
    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    try:
        for pkg, path in (("torchvision", root), ("torchvision.models", os.path.join(root, "models"))):
            module = types.ModuleType(pkg)
            module.__path__ = [path]
            sys.modules[pkg] = module
        module = importlib.import_module(f"torchvision.models.{'inception' if name == 'inception_v3' else name}")
        return getattr(module, name)(weights=None, **kwargs)
    finally:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules.update(saved)
