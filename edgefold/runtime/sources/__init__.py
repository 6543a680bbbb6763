"""Frame sources for ``edgefold run``: GenICam cameras (Aravis), video/RTSP/V4L2 (OpenCV), image folders
(Pillow) and raw-buffer folders, each delivering frames in the format the engine reads (its contract).

    from edgefold.runtime import Engine
    from edgefold.runtime.sources import open_source
    with Engine("m.camera.onnx") as engine:
        source = open_source("aravis:Fake_1", engine.contract)   # the camera is set to the contract
        source.start()
        frame = source.read()                                     # a Frame, or None at the end of a file/folder
        outputs = engine.infer(frame.raw)
        source.close()

A spec is ``aravis:DEVICE_ID`` (``aravis:`` alone: the first camera), ``v4l2:N``, ``/dev/videoN`` or
``v4l2:/dev/PATH``, an ``rtsp://``/``http://`` URL or a video file (OpenCV), or a folder of images or of
``.raw``/``.bin`` buffers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgefold.core.contract import InputContract, PixelFormat, pixel_format
from edgefold.errors import UsageError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


@dataclass
class Frame:
    """One buffer as the engine reads it (``raw``: H x W for 1-channel formats and mosaics, H x W x 3 for
    colour), with where and when it came from.

    Where ``release`` is set, ``raw`` is a view of a camera buffer (zero copy): it stays intact until ``done()``
    hands the buffer back to the camera, which may then write the next frame into it. Keep a copy to use it later.
    """

    camera: str
    frame_id: int
    timestamp_ns: int | None  # the camera's own clock (None where the source has none)
    raw: np.ndarray
    acquired: float = 0.0  # time.monotonic() when the buffer reached edgefold
    release: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def done(self) -> None:
        """The pipeline is finished with ``raw``: its buffer goes back to the camera (once; nothing otherwise)."""
        release, self.release = self.release, None
        if release is not None:
            release()


class Source(Protocol):
    name: str
    live: bool  # a camera or stream that does not wait for the reader (real time), not a file or folder
    notes: list[str]  # conversions the source makes (shown in the summary)
    skipped: int  # buffers the source received but could not use (incomplete, failed, wrong format)

    @property
    def missed(self) -> int:
        """Frames the camera sent while no buffer was free (its driver's underruns): lost, never queued."""
        ...

    def start(self) -> None: ...

    def read(self) -> Frame | None:
        """The next frame; None at the end of a finite source. Raises ``SourceLost`` when a live one stops."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Target:
    """What a source must deliver: the engine's pixel format and frame size (None: any, for a dynamic input)."""

    fmt: PixelFormat
    size: tuple[int, int] | None  # image H, W (a 4:2:0 buffer is 3H/2 x W: fmt.buffer_size)
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, contract: InputContract, size: tuple[int, int] | None = None) -> Target:
        fmt = contract.pixel_format
        if fmt is None:  # a bare "as-original" contract takes the model's own channels
            fmt = pixel_format("rgb" if contract.channels == 3 else "gray")
        static = contract.static_size()
        if static is not None:
            static = fmt.image_size(*static)
            if size is not None and size != static:
                raise UsageError(f"--size {size[0]}x{size[1]}: the engine's input '{contract.name}' takes "
                                 f"{static[0]}x{static[1]} frames; drop --size or rebuild for that size")
        return cls(fmt, static or size)

    def shape(self, size: tuple[int, int] | None = None) -> tuple[int, ...] | None:
        """A raw frame's array shape at ``size`` (default: the target's)."""
        size = size or self.size
        if size is None:
            return None
        rows, cols = self.fmt.buffer_size(*size)  # a YUV buffer: 3H/2 x W (4:2:0) or H x 2W (4:2:2)
        return (rows, cols, 3) if self.fmt.channels == 3 else (rows, cols)

    @property
    def dtype(self) -> np.dtype:
        """A raw frame's array dtype: 8-bit formats uint8, deeper ones little-endian uint16."""
        return np.dtype("<u2") if self.fmt.bits > 8 else np.dtype(np.uint8)


def open_source(spec: str, contract: InputContract, *, size: tuple[int, int] | None = None,
                roi: tuple[int, int] | None = None, frame_rate: float | None = None) -> Source:
    """The source a ``--source`` spec names, set to deliver what ``contract`` reads. A camera that cannot is a
    ``UsageError`` naming what it offers, raised before any frame is read."""
    target = Target.of(contract, size)
    if spec.startswith("aravis:"):
        from edgefold.runtime.sources.aravis import AravisSource

        return AravisSource(spec[len("aravis:"):] or None, target, roi=roi, frame_rate=frame_rate)
    if roi is not None:
        raise UsageError(f"--roi applies to aravis: cameras, not to {spec}")
    path = Path(spec)
    if path.is_dir():
        from edgefold.runtime.sources.folder import folder_source

        return folder_source(path, target)
    lowered = spec.lower()
    if (lowered.startswith(("v4l2:", "/dev/video", "rtsp://", "rtsps://", "http://", "https://"))
            or path.suffix.lower() in VIDEO_SUFFIXES):
        from edgefold.runtime.sources.video import VideoSource

        return VideoSource(spec, target)
    if path.exists():
        raise UsageError(f"{spec}: not a folder of frames nor a video ({', '.join(VIDEO_SUFFIXES)}); give a folder, "
                         f"a video file, v4l2:N, rtsp://... or aravis:DEVICE")
    raise UsageError(f"--source {spec}: no such file or folder; sources are aravis:DEVICE, v4l2:N, rtsp://..., a "
                     f"video file or a folder of images / .raw buffers")


__all__ = ["Frame", "Source", "Target", "open_source"]
