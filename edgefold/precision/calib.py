"""Calibration frames: a folder of images or an .npy stack of frames, as raw camera pixels.

No normalisation is applied: after folding, the model reads raw pixels, so calibration frames are fed as
the camera gives them, resized only to the engine's input size. Every fifth frame is held out to check
the prepared model on frames it was not calibrated on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefold.core.frames import load_images
from edgefold.errors import UsageError


@dataclass(frozen=True)
class CalibSet:
    names: tuple[str, ...]
    frames: tuple[np.ndarray, ...]  # (J, H, W) raw pixel values

    def split(self) -> tuple[CalibSet, CalibSet]:
        """(calibration, held-out): every fifth frame is held out (at least one of each when possible)."""
        idx = list(range(len(self.frames)))
        held = [i for i in idx if i % 5 == 4] or (idx[-1:] if len(idx) > 1 else [])
        cal = [i for i in idx if i not in held]
        pick = lambda ids: CalibSet(tuple(self.names[i] for i in ids), tuple(self.frames[i] for i in ids))
        return pick(cal), pick(held)

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for f in self.frames:
            h.update(np.ascontiguousarray(f, dtype=np.float32).tobytes())
        return h.hexdigest()


def load_calibration(source: str, channels: int, size: tuple[int, int] | None, count: int | None,
                     order: str = "rgb") -> CalibSet:
    p = Path(source)
    if p.is_dir():
        items = load_images(p, channels, size, order, limit=count)
    elif p.suffix == ".npy" and p.is_file():
        stack = np.load(p, allow_pickle=False)
        if stack.ndim == 3:  # N, H, W gray
            stack = stack[:, None]
        elif stack.ndim == 4 and stack.shape[-1] in (1, 3):  # N, H, W, C
            stack = np.moveaxis(stack, -1, 1)
        if stack.ndim != 4 or stack.shape[1] not in (1, 3):
            raise UsageError(f"{p}: expected frames as (N, H, W) or (N, H, W, C), got {stack.shape}")
        if stack.shape[1] != channels:
            stack = stack.mean(axis=1, keepdims=True) if channels == 1 else np.repeat(stack, channels, axis=1)
        frames = [f.astype(np.float64) for f in stack[:count]]
        if size is not None and frames and frames[0].shape[1:] != tuple(size):
            raise UsageError(f"{p}: frames are {frames[0].shape[1]}x{frames[0].shape[2]}, the engine input is "
                             f"{size[0]}x{size[1]}; resize the stack or use a folder of images")
        items = [(f"{p.name}[{i}]", f) for i, f in enumerate(frames)]
    elif not p.exists():
        raise UsageError(f"{p}: no such file or folder (--calib takes a folder of images or an .npy stack)")
    else:
        raise UsageError(f"{p}: --calib takes a folder of images or an .npy stack of frames")
    if len(items) < 2:
        raise UsageError(f"{p}: at least 2 calibration frames are needed, found {len(items)}")
    return CalibSet(tuple(n for n, _ in items), tuple(f for _, f in items))
