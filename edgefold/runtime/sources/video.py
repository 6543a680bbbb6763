"""Video files, RTSP/HTTP streams and V4L2 devices through OpenCV's ``VideoCapture``. OpenCV decodes to BGR;
a frame is converted only where the engine reads another format - Mono8 with the BT.601 luma weights
(0.299 R + 0.587 G + 0.114 B, ``cv2.COLOR_BGR2GRAY``), RGB8 by reversing the channels - and resized (area
interpolation) to a static engine size. Each conversion is named in the summary. Mosaics, YUV buffers and
deeper Mono formats cannot come from decoded video: a one-line error says so."""
from __future__ import annotations

import glob
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefold.errors import SourceLost, UsageError
from edgefold.runtime.sources import Frame, Target


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise UsageError("video, RTSP and V4L2 sources need OpenCV: pip install 'edgefold[camera]'") from None
    return cv2


def v4l2_device(spec: str) -> str | None:
    """The device a V4L2 spec names - ``v4l2:N`` and ``/dev/videoN`` are ``/dev/videoN``, ``v4l2:PATH`` is PATH
    (e.g. a stable ``/dev/v4l/by-id/...`` name) - or None for a spec that is not V4L2."""
    if spec.startswith("/dev/video"):
        return spec
    if not spec.lower().startswith("v4l2:"):
        return None
    rest = spec[len("v4l2:"):]
    if rest.isdigit():
        return f"/dev/video{int(rest)}"
    if rest.startswith("/"):
        return rest
    raise UsageError(f"{spec}: expected v4l2:N (/dev/videoN), v4l2:/dev/PATH or /dev/videoN")


STREAM_OPEN_TIMEOUT = 10.0  # s: an RTSP/HTTP server that does not answer (FFmpeg's own default: 30 s)
# s without a frame: lost (FFmpeg's default: 30 s); under the 5 s a run waits for its readers at the end, so a
# stalled read is over before its capture is released
STREAM_LOST_AFTER = 4.0


def _open_stream(cv2: Any, url: str) -> Any:
    """A network stream through FFmpeg with edgefold's timeouts, where OpenCV has FFmpeg (else its own choice)."""
    if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        return cv2.VideoCapture(url)
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(STREAM_OPEN_TIMEOUT * 1000),
                                                   cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(STREAM_LOST_AFTER * 1000)])


def _open_v4l2(cv2: Any, spec: str, device: str) -> Any:
    if not Path(device).exists():
        found = sorted(glob.glob("/dev/video*"), key=lambda d: (len(d), d))
        raise UsageError(f"{spec}: no such V4L2 device {device}; found {', '.join(found) or 'none'} (a camera shows "
                         f"up as /dev/videoN once plugged in and its driver, e.g. uvcvideo, is loaded)")
    return cv2.VideoCapture(device, cv2.CAP_V4L2)


class VideoSource:
    def __init__(self, spec: str, target: Target) -> None:
        cv2 = self.cv2 = _cv2()
        fmt = target.fmt
        if not fmt.per_pixel or fmt.bits > 8:
            raise UsageError(f"{spec}: OpenCV decodes video to 8-bit BGR; the engine reads {fmt.genicam} buffers: use "
                             f"aravis: or a folder of .raw buffers, or fold the model for Mono8/RGB8")
        self.name = spec
        self.target = target
        self.skipped = self.missed = 0
        self.notes: list[str] = []
        device = v4l2_device(spec)
        self.live = device is not None or "://" in spec
        if device is None and "://" not in spec and not Path(spec).is_file():
            raise UsageError(f"{spec}: no such file")
        if device is not None:
            self.cap = _open_v4l2(cv2, spec, device)
        else:
            self.cap = _open_stream(cv2, spec) if "://" in spec else cv2.VideoCapture(spec)
        if not self.cap.isOpened() and device is not None:
            raise UsageError(f"{spec}: OpenCV's V4L2 backend cannot open {device} (busy, no permission, or not a "
                             f"capture device; -v shows OpenCV's reason)")
        if not self.cap.isOpened():
            raise UsageError(f"{spec}: OpenCV cannot open it (no such file/device, no server answering, or no decoder "
                             f"for it; -v shows FFmpeg's reason)")
        self._convert = {"gray": cv2.COLOR_BGR2GRAY, "rgb": cv2.COLOR_BGR2RGB}.get(fmt.order)
        if self._convert is not None:
            self.notes.append("BGR -> Mono8 (BT.601 weights)" if fmt.order == "gray" else "BGR -> RGB8")
        self._resized = False
        self._index = 0
        self._started = False
        self._first: tuple[bool, np.ndarray] | None = None
        if not self.live:  # a file that opens but decodes nothing is refused before anything is written
            self._first = self.cap.read()
            if not self._first[0]:
                self.cap.release()
                raise UsageError(f"{spec}: no frames (OpenCV opens it but decodes none: an empty or truncated video)")

    def start(self) -> None:
        self._started = True

    def read(self) -> Frame | None:
        asked = time.monotonic()
        ok, bgr = self.cap.read() if self._first is None else self._first
        self._first = None
        now = time.monotonic()
        if not ok:
            if self.live and self._index:
                raise SourceLost(f"{self.name}: {self._why_lost(now - asked)}")
            if self.live:
                raise UsageError(f"{self.name}: the stream gave no frame")
            return None
        stamp = self.cap.get(self.cv2.CAP_PROP_POS_MSEC)
        frame = self._to_engine(bgr)
        index, self._index = self._index, self._index + 1
        # a file's first frame is at 0 ms; a live stream that reports 0 has no time of its own
        known = stamp > 0 or (stamp == 0 and not self.live and index == 0)
        return Frame(self.name, index, int(stamp * 1e6) if known else None, frame, now)

    def _why_lost(self, waited: float) -> str:
        if "://" not in self.name:
            return "the device stopped delivering frames (unplugged, or taken by its driver)"
        if waited >= 0.9 * STREAM_LOST_AFTER:  # FFmpeg gave up waiting: the server is there but sends nothing
            return f"no frame for {waited:.0f} s (the server stalled or the network dropped)"
        return "the server ended the stream (stopped, or closed the connection)"

    def _to_engine(self, bgr: np.ndarray) -> np.ndarray:
        cv2, size = self.cv2, self.target.size
        if size is not None and bgr.shape[:2] != size:
            if not self._resized:
                self.notes.append(f"resized {bgr.shape[0]}x{bgr.shape[1]} -> {size[0]}x{size[1]} (HxW)")
                self._resized = True
            bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return bgr if self._convert is None else cv2.cvtColor(bgr, self._convert)

    def close(self) -> None:
        self.cap.release()
