"""GigE Vision and USB3 Vision cameras through Aravis 0.8 (GObject introspection): the only module that imports
``gi`` or Aravis, so ``import edgefold`` never needs PyGObject.

On open the camera is set to the engine's contract - PixelFormat (the PFNC name) and Width/Height, offsets
centred on the sensor (kept even for a mosaic, so the Bayer phase stays the named one) or at ``roi`` - and
read back; a camera that cannot is a one-line ``UsageError`` naming what it offers. Each buffer's own status,
pixel format and size are checked: an incomplete or failed buffer is counted in ``skipped`` and not used.

Zero copy (``map_buffers``, which the pipeline calls): the stream's buffers are made over host memory the caller
gives (the engine's: pinned for TensorRT), each frame is a numpy view of its buffer, and the buffer goes back to
the camera only when the frame's ``done()`` is called. Without it, each buffer is copied out (PyGObject's
``get_data``) and handed back at once.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgefold.errors import SourceLost, UsageError
from edgefold.runtime.sources import Frame, Target

INSTALL = ("aravis: sources need PyGObject and Aravis: pip install 'edgefold[camera]' (PyGObject<3.51 builds with "
           "Debian libgirepository1.0-dev libcairo2-dev pkg-config)")


def _aravis() -> tuple[Any, Any]:
    """(Aravis, GLib) from the ``aravis-python`` wheel's libaravis, or a system typelib."""
    try:
        try:
            import aravis  # noqa: F401 - the wheel's import points GI at its bundled libaravis and typelib
        except ImportError:
            pass
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis, GLib
    except (ImportError, ValueError) as err:
        raise UsageError(f"{INSTALL} ({err})") from None
    return Aravis, GLib


class _ImageData:
    """The address of a buffer's image data, which GI hands out only as a copy (``get_data``): libaravis' own
    ``arv_buffer_get_image_data`` through ctypes, on the GObject pointer PyGObject holds."""

    @staticmethod
    def library() -> str | None:
        """The libaravis GI loaded: the ``aravis-python`` wheel's, else the system's."""
        try:
            import aravis

            return str(aravis.aravis_module)
        except (ImportError, AttributeError):
            return ctypes.util.find_library("aravis-0.8")

    def __init__(self, path: str) -> None:
        self._get = ctypes.CDLL(path).arv_buffer_get_image_data
        self._get.restype = ctypes.c_void_p
        self._get.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        self._pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
            ("PyCapsule_GetPointer", ctypes.pythonapi))

    def __call__(self, buf: Any) -> tuple[int, int]:
        """(address, size in bytes) of ``buf``'s image data."""
        size = ctypes.c_size_t()
        address = self._get(self._pointer(buf.__gpointer__, None), ctypes.byref(size))
        return int(address or 0), int(size.value)


def device_ids(Aravis: Any) -> tuple[list[str], list[str]]:  # noqa: N803 - the GI namespace's own name
    """(the cameras found - GigE Vision, USB3 Vision -, Aravis' simulated ones), discovered afresh: what
    ``aravis:ID`` can open. The simulated camera (``Fake_1``) is opened only by its name: ``aravis:`` alone takes
    the first real camera."""
    Aravis.enable_interface("Fake")
    Aravis.update_device_list()  # before Camera.new: a GigE camera opened without discovery streams nothing
    found = [(Aravis.get_device_id(i), Aravis.get_device_protocol(i)) for i in range(Aravis.get_n_devices())]
    return [d for d, kind in found if kind != "Fake"], [d for d, kind in found if kind == "Fake"]


class AravisSource:
    live = True

    def __init__(self, device_id: str | None, target: Target, *, roi: tuple[int, int] | None = None,
                 frame_rate: float | None = None, buffers: int = 4, lost_after: float = 2.0) -> None:
        self.Aravis, self.GLib = _aravis()
        self.target = target
        self.skipped = 0
        self._missed = 0
        self.notes: list[str] = []
        self.lost_after = lost_after
        self._buffers = buffers
        self._lost = threading.Event()
        self._memory: Callable[[int], np.ndarray] | None = None  # map_buffers: where the buffers live
        self._held = 0
        self._mapped: dict[int, tuple[Any, np.ndarray]] = {}  # user data -> (ArvBuffer, the memory under it)
        self._image_data: _ImageData | None = None
        self._lock = threading.Lock()  # frames are handed back from the engine's and the acquisition threads
        self._gone = False  # lost mid-stream: closing does not talk to it (each command would time out)
        cameras, simulated = device_ids(self.Aravis)
        also = f"; Aravis' simulated camera is {', '.join(f'aravis:{d}' for d in simulated)}" if simulated else ""
        if device_id is None and not cameras:
            raise UsageError(f"aravis: no camera found (GigE Vision on this host's networks, USB3 Vision){also}")
        if device_id is not None and device_id not in cameras + simulated:
            raise UsageError(f"aravis:{device_id}: no such camera; cameras found: "
                             f"{', '.join(f'aravis:{d}' for d in cameras) or 'none'}{also}")
        self.device_id = device_id or cameras[0]
        self.name = f"aravis:{self.device_id}"
        try:
            self.cam = self.Aravis.Camera.new(self.device_id)
        except self.GLib.Error as err:
            raise UsageError(f"{self.name}: cannot open the camera ({err.message})") from None
        self._configure(roi, frame_rate)
        self.cam.get_device().connect("control-lost", lambda *_: self._lost.set())
        self.stream: Any = None

    # -- the contract -------------------------------------------------------------------------------
    def _configure(self, roi: tuple[int, int] | None, frame_rate: float | None) -> None:
        fmt, cam = self.target.fmt, self.cam
        offered = list(cam.dup_available_pixel_formats_as_strings() or [])
        names = {fmt.genicam, fmt.name, *fmt.aliases}
        chosen = next((o for o in offered if o in names), None)
        if chosen is None:
            raise UsageError(f"{self.name}: the camera offers {', '.join(offered)}; the engine reads {fmt.genicam}: "
                             f"fold the model with --pixel-format set to one of those")
        asked = f"{fmt.genicam}"  # grows as the settings are chosen: the refusal names what was asked so far
        try:
            cam.set_pixel_format_from_string(chosen)
            max_w, max_h = cam.get_width_bounds()[1], cam.get_height_bounds()[1]
            h, w = self.target.size or (cam.get_region()[3], cam.get_region()[2])
            if w > max_w or h > max_h:
                raise UsageError(f"{self.name}: the camera gives at most {max_w}x{max_h} (WxH); the engine reads "
                                 f"{w}x{h}: rebuild the engine for a smaller frame")
            if roi is not None:
                x, y = roi
            else:
                sensor_w, sensor_h = self._sensor(max_w, max_h)
                x, y = (sensor_w - w) // 2, (sensor_h - h) // 2
                if fmt.mosaic:
                    x, y = x - x % 2, y - y % 2
            asked = f"{fmt.genicam} {w}x{h} at ({x},{y})"
            cam.set_region(x, y, w, h)
            rate = ""
            if frame_rate is not None:
                asked += f" at {frame_rate:g} fps"
                cam.set_frame_rate(frame_rate)
                # a rate outside the camera's range is clamped or ignored, not refused: say what it runs at
                low, high = cam.get_frame_rate_bounds()
                rate = f", {cam.get_frame_rate():g} fps"
                if not low <= frame_rate <= high:
                    rate += f" (--fps {frame_rate:g} is outside the camera's {low:g}..{high:g})"
            got = cam.get_region()
            got_fmt = cam.get_pixel_format_as_string()
        except self.GLib.Error as err:
            raise UsageError(f"{self.name}: the camera refused {asked} ({err.message}); check --roi and that "
                             f"the camera answers") from None
        if got_fmt != chosen or (got[2], got[3]) != (w, h) or (got[0], got[1]) != (x, y):
            raise UsageError(f"{self.name}: asked for {chosen} {w}x{h} at ({x},{y}), the camera gives {got_fmt} "
                             f"{got[2]}x{got[3]} at ({got[0]},{got[1]}); check --roi and the camera's increments")
        self.size = (h, w)
        self.pfnc = int(cam.get_pixel_format())
        self.notes.append(f"camera set to {chosen} {w}x{h} (WxH) at ({x},{y}){rate}")

    def _sensor(self, max_w: int, max_h: int) -> tuple[int, int]:
        try:
            return tuple(self.cam.get_sensor_size())  # type: ignore[return-value]
        except self.GLib.Error:
            return max_w, max_h

    # -- acquisition --------------------------------------------------------------------------------
    def map_buffers(self, memory: Callable[[int], np.ndarray], held: int) -> str | None:
        """Before ``start``: make the stream's buffers over ``memory(nbytes)`` (a uint8 array each) and deliver
        frames as views of them, each buffer back to the camera at its frame's ``done()``. ``held``: the frames
        the caller may hold at once; the camera keeps its own ``buffers`` besides, and a camera faster than that
        loses frames in its driver (``missed``). Returns why not where it cannot (frames are then copied)."""
        path = _ImageData.library()
        try:
            self._image_data = _ImageData(path) if path else None
        except (OSError, AttributeError) as err:  # not loadable, or a libaravis without the function
            return f"PyGObject copies each buffer out: libaravis is not reachable through ctypes ({err})"
        if self._image_data is None:
            return "PyGObject copies each buffer out: libaravis-0.8 not found for ctypes"
        self._memory, self._held = memory, held
        return None

    def start(self) -> None:
        Aravis = self.Aravis  # noqa: N806
        self.stream = self.cam.create_stream(None, None)
        payload = self.cam.get_payload()
        if self._memory is None:
            for _ in range(self._buffers):
                self.stream.push_buffer(Aravis.Buffer.new_allocate(payload))
        else:
            for key in range(1, self._buffers + self._held + 1):  # user data 0 is a buffer that is not ours
                memory = self._memory(payload)
                buf = Aravis.Buffer.new_full(payload, memory.ctypes.data, key, None)
                self._mapped[key] = (buf, memory)  # keeps the memory alive as long as the buffer
                self.stream.push_buffer(buf)
        self.cam.start_acquisition()
        self._last = time.monotonic()

    def read(self) -> Frame | None:
        ok = self.Aravis.BufferStatus.SUCCESS
        while True:
            try:
                buf = self.stream.timeout_pop_buffer(100_000)  # µs
            except self.GLib.Error as err:
                self._gone = True
                raise SourceLost(f"{self.name}: the stream failed ({err.message})") from None
            now = time.monotonic()
            if buf is None:
                if self._lost.is_set() or now - self._last > self.lost_after:
                    why = "the camera's control connection was lost" if self._lost.is_set() else \
                        f"no frame for {self.lost_after:g} s"
                    self._gone = True
                    raise SourceLost(f"{self.name}: {why} (camera stopped, unplugged or off the network)")
                continue
            self._last = now
            usable = (buf.get_status() == ok and int(buf.get_image_pixel_format()) == self.pfnc
                      and (buf.get_image_height(), buf.get_image_width()) == self.size)
            if not usable:
                self.skipped += 1
                self.stream.push_buffer(buf)
                continue
            frame_id, stamp = int(buf.get_frame_id()), int(buf.get_timestamp() or buf.get_system_timestamp())
            raw = self._view(buf)
            if raw is not None:
                return Frame(self.name, frame_id, stamp, raw, now, functools.partial(self._give_back, buf))
            data = buf.get_data()  # bytes (PyGObject's one copy); the array below shares it
            self.stream.push_buffer(buf)
            return Frame(self.name, frame_id, stamp, self._array(data), now)

    def _view(self, buf: Any) -> np.ndarray | None:
        """The frame as a read-only view of one of our mapped buffers; None for a buffer that is not one."""
        mapped = self._mapped.get(int(buf.get_user_data() or 0))
        if mapped is None or self._image_data is None:
            return None
        memory = mapped[1]
        address, size = self._image_data(buf)
        offset = address - memory.ctypes.data
        if offset < 0 or offset + size > memory.nbytes:
            return None
        raw = self._array(memory[offset:offset + size])
        raw.flags.writeable = False
        return raw

    def _give_back(self, buf: Any) -> None:
        with self._lock:
            if self.stream is not None:  # after close the stream is gone; the buffer goes with this object
                self.stream.push_buffer(buf)

    @property
    def missed(self) -> int:
        """Frames the camera sent while every buffer was taken (Aravis' underruns)."""
        if self.stream is not None:
            # ArvStream's (completed, failures, underruns); a GigE stream's own get_statistics is about packets
            self._missed = int(self.Aravis.Stream.get_statistics(self.stream)[2])
        return self._missed

    def _array(self, data: bytes | np.ndarray) -> np.ndarray:
        shape = self.target.shape(self.size)
        assert shape is not None
        return np.frombuffer(data, self.target.dtype, count=int(np.prod(shape))).reshape(shape)

    def close(self) -> None:
        if self._gone:
            # freeing a lost GigE camera's stream and device waits out their network timeouts (about 4 s and 5 s
            # here): keep them referenced; they go with this object
            return
        try:
            self.cam.stop_acquisition()
        except self.GLib.Error:
            pass  # a camera that is gone cannot be stopped
        self._missed = self.missed
        with self._lock:
            self.stream = None
