"""Raw camera frames for checks and comparisons, and how each model's input is fed from one frame.

A raw frame is a (J, H, W) float64 array of pixel values as the camera gives them (J = 1 for gray, 3 for
colour in camera order). Every model gets its own feed built from the same raw frame: its input's affine
map (replication, channel order, declared normalisation), dtype, layout and batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefold.core.affine import ChannelAffine
from edgefold.core.contract import InputContract, PixelFormat
from edgefold.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pnm", ".bmp", ".tif", ".tiff", ".npy")


def synthetic_frames(height: int, width: int, channels: int, pixel_max: float, seed: int = 0) -> list[np.ndarray]:
    """Frames where folds break: random over the full range, black, white, hard edges (a checkerboard),
    and a document-like page (dark strokes on white) that makes detectors respond."""
    rng = np.random.default_rng(seed)
    integral = pixel_max >= 2
    rand = rng.integers(0, int(pixel_max) + 1, (channels, height, width)).astype(np.float64) if integral \
        else rng.random((channels, height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((yy // 5) + (xx // 7)) % 2).astype(np.float64) * pixel_max
    page = np.full((height, width), pixel_max * 0.9)
    for _ in range(max(1, height * width // 400)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        page[y:y + rng.integers(2, 5), x:x + rng.integers(1, 3)] = pixel_max * 0.1  # stroke
        page[y:y + 2, x:x + rng.integers(3, 12)] = pixel_max * 0.05
    frames = [rand, np.zeros_like(rand), np.full_like(rand, pixel_max), checker, page]
    if integral:  # integer pixels must survive the cast to the input's dtype unchanged
        frames = [np.round(f) for f in frames]
    return [np.broadcast_to(f, rand.shape).copy() for f in frames]


def load_images(folder: str | Path, channels: int, size: tuple[int, int] | None, order: str = "rgb",
                limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, raw frame) for every image in ``folder``: gray or colour as the model needs, resized to a
    static input size (bilinear), native size for dynamic models. ``order="bgr"`` reverses colour."""
    root = Path(folder)
    if not root.exists():
        raise UsageError(f"{root}: no such file or folder")
    if root.is_file():
        raise UsageError(f"{root}: a file, not a folder of images; give the folder that holds the frames")
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder of images")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise UsageError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        arr = read_image(p, channels, size).astype(np.float64)
        frame = arr[None] if arr.ndim == 2 else np.moveaxis(arr, 2, 0)
        if order == "bgr" and frame.shape[0] == 3:
            frame = frame[::-1]
        out.append((p.name, frame.copy()))
    return out


def _missing(p: Path) -> str:
    """The one message for a frame that is not there: ``PATH: no such file`` (a folder says so)."""
    return f"{p} is a folder; give the frame files in it (e.g. {p}/*.png)" if p.is_dir() else f"{p}: no such file"


def read_raw(path: str | Path, fmt: PixelFormat, size: tuple[int, int] | None) -> np.ndarray:
    """A camera's raw buffer file (.raw/.bin: the bytes as the camera sends them, 8-bit or little-endian 16-bit
    words) as an H x W array (for 4:2:0 YUV: (3H/2) x W, the buffer) of the format's engine dtype."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(_missing(p))
    if size is None:
        raise UsageError(f"{p}: a raw frame has no header; give the frame size with --size HxW")
    h, w = size
    dtype = np.dtype("<u2") if fmt.bits > 8 else np.dtype(np.uint8)
    want = h * w * dtype.itemsize
    got = p.stat().st_size
    if got != want:
        raise UsageError(f"{p} holds {got} bytes; a {h}x{w} (HxW) {fmt.genicam} buffer is {want} bytes "
                         f"({h} x {w} x {dtype.itemsize}); check the buffer size (--size HxW) and that the camera "
                         f"sends {fmt.genicam}")
    arr = np.fromfile(p, dtype=dtype).reshape(h, w)
    if arr.max(initial=0) > fmt.max_value:
        raise UsageError(f"{p}: a value {int(arr.max())} exceeds {fmt.genicam}'s {int(fmt.max_value)}; check that "
                         f"the camera sends {fmt.genicam}")
    return arr.astype(np.dtype(fmt.dtype))


def read_image(path: str | Path, channels: int, size: tuple[int, int] | None, resize: bool = True) -> np.ndarray:
    """H x W (gray) or H x W x 3 uint8 as a camera frame; an .npy frame is taken as stored. With a static
    ``size`` (H, W) the image is resized to it, or refused when ``resize`` is False."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise UsageError(_missing(p))
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False)
        img = Image.fromarray(arr if arr.dtype == np.uint8 else np.clip(arr, 0, 255).astype(np.uint8))
    else:
        try:
            img = Image.open(p)
            img.load()
        except Exception as err:  # noqa: BLE001 - any decoder error is a bad input file
            raise UsageError(f"{p}: cannot read image ({err})") from None
    img = img.convert("L" if channels == 1 else "RGB")
    if size is not None and img.size != (size[1], size[0]):
        if not resize:
            raise UsageError(f"{p} is {img.size[1]}x{img.size[0]} (HxW), the model takes {size[0]}x{size[1]}: "
                             f"pass --resize or give frames of the camera's size")
        return resized(np.asarray(img), size)
    return np.asarray(img)


def resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An H x W or H x W x 3 uint8 frame at ``size`` (H, W): bilinear, as every image edgefold reads is resized."""
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))


@dataclass(frozen=True)
class InputFeed:
    """How one model input receives a raw frame."""

    name: str
    dtype: str
    shape: tuple  # as declared (ints or symbolic names)
    channel_axis: int
    affine: ChannelAffine  # raw channels -> this input's channels

    def tensor(self, frame: np.ndarray) -> np.ndarray:
        a, b = self.affine.matrix, self.affine.offset
        x = np.einsum("cj,jhw->chw", a, frame) + b[:, None, None]
        return to_layout(x, self.shape, self.channel_axis, self.dtype)

    @classmethod
    def from_contract(cls, contract: InputContract) -> InputFeed:
        """The folded input fed raw pixels as its contract says (no conversion: the model does it)."""
        return cls(contract.name, contract.dtype, tuple(contract.shape), contract.channel_axis,
                   ChannelAffine.identity(contract.channels))

    def static_size(self) -> tuple[int, int] | None:
        spatial = [d for i, d in enumerate(self.shape) if i not in (0, self.channel_axis)]
        return (spatial[0], spatial[1]) if all(isinstance(d, int) for d in spatial) else None

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "channel_axis": self.channel_axis,
                "affine": self.affine.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> InputFeed:
        aff = d["affine"]
        return cls(d["name"], d["dtype"], tuple(d["shape"]), int(d["channel_axis"]),
                   ChannelAffine(np.asarray(aff["matrix"]), np.asarray(aff["offset"])))


def to_layout(frame_chw: np.ndarray, shape: tuple, channel_axis: int, dtype: str) -> np.ndarray:
    """A (C, H, W) frame as a tensor with channels on ``channel_axis`` (-1: an N x H x W gray input without
    a channel axis), repeated to a fixed batch size."""
    batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else 1
    x = np.repeat(frame_chw[None], batch, axis=0)  # N C H W
    if channel_axis == -1:
        x = x[:, 0]
    elif channel_axis != 1:
        x = np.moveaxis(x, 1, channel_axis)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(np.dtype(dtype))
        x = np.clip(np.round(x), info.min, info.max)
    return x.astype(dtype)
