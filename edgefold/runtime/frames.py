"""Arranging a raw camera frame as the input contract says (layout, channels, dtype, batch)."""
from __future__ import annotations

import numpy as np

from edgefold.errors import UsageError


def arrange(frame: np.ndarray, contract: dict) -> np.ndarray:
    """A raw frame - H x W or N x H x W for gray, H x W x C or N x H x W x C for colour - as the input tensor."""
    x = np.asarray(frame)
    channels, layout, dtype = int(contract["channels"]), contract["layout"], np.dtype(contract["dtype"])
    if channels == 1:
        if x.ndim == 3 and x.shape[-1] in (3, 4):
            raise UsageError(f"frame of shape {tuple(frame.shape)} looks like colour (H x W x {x.shape[-1]}); the "
                             f"model takes gray frames H x W or N x H x W: convert it first")
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.ndim != 3:
            raise UsageError(f"a gray frame is H x W or N x H x W, got shape {tuple(frame.shape)}")
        if layout != "NHW":  # NHW: the model inserts the channel axis itself
            x = x[:, None] if layout == "NCHW" else x[..., None]
    else:
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != channels:
            raise UsageError(f"a {channels}-channel frame is H x W x {channels} or N x H x W x {channels}, "
                             f"got shape {tuple(frame.shape)}")
        if layout == "NCHW":
            x = np.transpose(x, (0, 3, 1, 2))
    if x.dtype != dtype:
        if dtype == np.uint8:
            raise UsageError(f"the model takes raw uint8 pixels, got {x.dtype} (convert with .astype(np.uint8) "
                             f"if the values are 0..255)")
        x = x.astype(dtype)
    shape = contract["shape"]
    for axis, (want, got) in enumerate(zip(shape, x.shape)):
        if isinstance(want, int) and want != got and axis != 0:
            raise UsageError(f"frame gives {tuple(x.shape)} for input '{contract['name']}', the model takes "
                             f"{tuple(shape)}; resize frames to the engine's size or rebuild it")
    return np.ascontiguousarray(x)
