"""JSON for reports and sidecars: numpy scalars and tuples as plain values (``json.dumps(..., default=plain)``)."""
from __future__ import annotations

import numpy as np


def plain(value):  # noqa: ANN001, ANN201 - json's default= hook
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
