"""Video files, RTSP/HTTP streams and V4L2 devices through OpenCV's ``VideoCapture``. OpenCV decodes to BGR;
a frame is converted only where the engine reads another format - Mono8 with the BT.601 luma weights
(0.299 R + 0.587 G + 0.114 B, ``cv2.COLOR_BGR2GRAY``), RGB8 by reversing the channels - and resized (area
interpolation) to a static engine size. Each conversion is named in the summary. Mosaics, YUV buffers and
deeper Mono formats cannot come from decoded video: a one-line error says so."""
from __future__ import annotations

import time
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
        device = spec[len("v4l2:"):] if spec.startswith("v4l2:") else spec
        self.live = spec.startswith(("v4l2:", "/dev/video")) or "://" in spec
        if spec.startswith("v4l2:") and device.isdigit():
            self.cap = cv2.VideoCapture(int(device), cv2.CAP_V4L2)
        else:
            self.cap = cv2.VideoCapture(device)
        if not self.cap.isOpened():
            raise UsageError(f"{spec}: OpenCV cannot open it (no such file/device, no server answering, or no decoder "
                             f"for it; -v shows FFmpeg's reason)")
        self._convert = {"gray": cv2.COLOR_BGR2GRAY, "rgb": cv2.COLOR_BGR2RGB}.get(fmt.order)
        if self._convert is not None:
            self.notes.append("BGR -> Mono8 (BT.601 weights)" if fmt.order == "gray" else "BGR -> RGB8")
        self._resized = False
        self._index = 0
        self._started = False

    def start(self) -> None:
        self._started = True

    def read(self) -> Frame | None:
        ok, bgr = self.cap.read()
        now = time.monotonic()
        if not ok:
            if self.live and self._index:
                raise SourceLost(f"{self.name}: the stream stopped delivering frames")
            if self.live:
                raise UsageError(f"{self.name}: the stream gave no frame")
            return None
        stamp = self.cap.get(self.cv2.CAP_PROP_POS_MSEC)
        frame = self._to_engine(bgr)
        index, self._index = self._index, self._index + 1
        return Frame(self.name, index, int(stamp * 1e6) if stamp > 0 else None, frame, now)

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
