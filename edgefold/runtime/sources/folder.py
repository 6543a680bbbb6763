"""Folders as sources: images (Pillow) or camera buffers (``.raw``/``.bin``, as the C++ sample reads them), in
name order, one frame per file; the frame id is the file's index, there is no camera timestamp."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgefold.core.frames import IMAGE_SUFFIXES, read_image, read_raw, resized
from edgefold.errors import UsageError
from edgefold.runtime.sources import Frame, Target

RAW_SUFFIXES = (".raw", ".bin")


class FolderSource:
    live = False

    def __init__(self, folder: Path, files: list[Path], load: Callable[[Path], np.ndarray], notes: list[str]) -> None:
        self.name = str(folder)
        self.files = files
        self.load = load
        self.notes = notes
        self.skipped = self.missed = 0
        self._next = 0

    def start(self) -> None:
        self._next = 0

    def read(self) -> Frame | None:
        if self._next >= len(self.files):
            return None
        index, self._next = self._next, self._next + 1
        raw = self.load(self.files[index])
        return Frame(self.name, index, None, raw, time.monotonic())

    def close(self) -> None:
        pass


def folder_source(folder: Path, target: Target) -> FolderSource:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    raws = [p for p in files if p.suffix.lower() in RAW_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if raws and images:
        raise UsageError(f"{folder}: holds both images and .raw/.bin buffers; give a folder of one kind")
    fmt = target.fmt
    if raws:
        size = target.size
        if size is None:
            raise UsageError(f"{folder}: raw buffers have no header and the engine's size is dynamic; give --size HxW")
        buffer = fmt.buffer_size(*size)
        return FolderSource(folder, raws, lambda p: read_raw(p, fmt, buffer).astype(_camera_dtype(fmt.bits)),
                            [f"{fmt.genicam} buffers {size[0]}x{size[1]} (HxW)"])
    if not images:
        raise UsageError(f"{folder}: no frames ({', '.join(RAW_SUFFIXES + IMAGE_SUFFIXES)})")
    if not fmt.per_pixel and fmt.chroma:
        raise UsageError(f"{folder}: the engine reads {fmt.genicam} buffers; give .raw/.bin files, not images")
    if fmt.bits > 8:
        return FolderSource(folder, images, lambda p: _deep_image(p, fmt.max_value, target.size),
                            [f"{fmt.genicam} from 16-bit images"])
    channels = fmt.channels
    notes = [f"images as {'gray' if channels == 1 else 'RGB'}"]
    size = target.size

    def load(p: Path) -> np.ndarray:
        arr = read_image(p, channels, None)
        if size is not None and arr.shape[:2] != size:  # said once, only where an image is resized
            if not any(n.startswith("resized") for n in notes):
                notes.append(f"resized {arr.shape[0]}x{arr.shape[1]} -> {size[0]}x{size[1]} (HxW)")
            arr = resized(arr, size)  # the decoded frame: the file is read once
        return arr[..., ::-1].copy() if fmt.order == "bgr" else arr

    return FolderSource(folder, images, load, notes)


def _camera_dtype(bits: int) -> type:
    return np.uint16 if bits > 8 else np.uint8


def _deep_image(path: Path, max_value: float, size: tuple[int, int] | None) -> np.ndarray:
    """A 16-bit gray image (PNG/TIFF mode I;16) or .npy as it is stored: no 8-bit conversion."""
    from PIL import Image

    arr = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.asarray(Image.open(path))
    if arr.ndim != 2 or arr.dtype.kind not in "ui" or arr.max(initial=0) > max_value:
        raise UsageError(f"{path}: expected a gray image of integers up to {int(max_value)}, got {arr.dtype} "
                         f"{tuple(arr.shape)}")
    if size is not None and arr.shape != size:
        raise UsageError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, the engine reads {size[1]}x{size[0]} (WxH)")
    return arr.astype(np.uint16)
