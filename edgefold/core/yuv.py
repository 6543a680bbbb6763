"""YUV (4:2:0 NV12, NV21, I420; packed 4:2:2 YUYV, UYVY) to RGB as a linear map: the matrices and a float64
reference.

The buffer is what GStreamer and V4L2 hand over: (3H/2) x W bytes, the Y plane (H x W), then the chroma -
NV12 U V interleaved at half resolution, NV21 V U, I420 a U plane then a V plane (each H/2 x W/2). Each 2x2
block of pixels shares one U and V (nearest upsampling, as OpenCV's ``cvtColor(COLOR_YUV2RGB_NV12)`` does).
``bt601-limited`` uses OpenCV's own coefficients (its fixed-point constants / 2^20), so the float reference
differs from OpenCV's uint8 output by its rounding, and by its clipping where a YUV triple lies outside the
RGB gamut.
"""
from __future__ import annotations

import numpy as np

from edgefold.errors import UsageError

# RGB = M @ (Y - y0, U - 128, V - 128): rows R, G, B; columns Y, U, V
MATRICES = {
    "bt601-limited": (16.0, np.array([[1220542, 0, 1673527], [1220542, -409993, -852492], [1220542, 2116026, 0]])
                      / 2.0 ** 20),
    "bt601-full": (0.0, np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])),
    "bt709-limited": (16.0, np.array([[1.164384, 0.0, 1.792741], [1.164384, -0.213249, -0.532909],
                                      [1.164384, 2.112402, 0.0]])),
    "bt709-full": (0.0, np.array([[1.0, 0.0, 1.5748], [1.0, -0.187324, -0.468124], [1.0, 1.8556, 0.0]])),
}


def matrix(name: str) -> tuple[float, np.ndarray]:
    if name not in MATRICES:
        raise UsageError(f"--yuv {name}: choose one of {', '.join(MATRICES)}")
    return MATRICES[name]


def affine(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(W (3, 3), b (3,)) with RGB = W @ (Y, U, V) + b."""
    y0, m = matrix(name)
    return m, -(m @ np.array([y0, 128.0, 128.0]))


# OpenCV's conversion code per layout (its default matrix is bt601-limited)
OPENCV_CODES = {"NV12": "COLOR_YUV2RGB_NV12", "NV21": "COLOR_YUV2RGB_NV21", "I420": "COLOR_YUV2RGB_I420",
                "YUYV": "COLOR_YUV2RGB_YUYV", "UYVY": "COLOR_YUV2RGB_UYVY"}
PACKED = ("YUYV", "UYVY")  # 4:2:2: H x 2W bytes, a pair of pixels in 4 bytes (Y0 U Y1 V, or U Y0 V Y1)


def planes(buffer: np.ndarray, chroma: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, U, V) at full resolution from a (3H/2, W) 4:2:0 buffer (U, V repeated over each 2x2 block) or an
    (H, 2W) packed 4:2:2 one (U, V repeated over each pair of pixels)."""
    buf = np.asarray(buffer, np.float64)
    if chroma in PACKED:
        h, w2 = buf.shape
        if w2 % 4:
            raise UsageError(f"a packed 4:2:2 buffer is H x 2W with an even W, got {h} x {w2}")
        quad = buf.reshape(h, w2 // 4, 4)
        if chroma == "YUYV":
            y, u, v = quad[..., [0, 2]].reshape(h, -1), quad[..., 1], quad[..., 3]
        else:
            y, u, v = quad[..., [1, 3]].reshape(h, -1), quad[..., 0], quad[..., 2]
        return y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1)
    rows, w = buf.shape
    if rows % 3 or (rows // 3 * 2) % 2 or w % 2:
        raise UsageError(f"a 4:2:0 buffer is (3H/2) x W with even H and W, got {rows} x {w}")
    h = rows // 3 * 2
    y, c = buf[:h], buf[h:]
    if chroma in ("NV12", "NV21"):
        uv = c.reshape(h // 2, w // 2, 2)
        u, v = (uv[..., 0], uv[..., 1]) if chroma == "NV12" else (uv[..., 1], uv[..., 0])
    elif chroma == "I420":
        flat = c.reshape(-1)
        q = h // 2 * (w // 2)
        u, v = flat[:q].reshape(h // 2, w // 2), flat[q:].reshape(h // 2, w // 2)
    else:
        raise UsageError(f"unknown 4:2:0 layout {chroma}")
    up = lambda p: np.repeat(np.repeat(p, 2, axis=0), 2, axis=1)  # noqa: E731
    return y, up(u), up(v)


def to_rgb(buffer: np.ndarray, chroma: str, name: str) -> np.ndarray:
    """A YUV buffer -> (3, H, W) float64 RGB, unclipped."""
    w_m, b = affine(name)
    yuv = np.stack(planes(buffer, chroma))
    return np.einsum("cj,jhw->chw", w_m, yuv) + b[:, None, None]


def from_rgb(rgb: np.ndarray, chroma: str, name: str) -> np.ndarray:
    """(3, H, W) RGB in 0..255 -> the camera's uint8 buffer: the inverse matrix, chroma averaged over the pixels
    that share it (2x2 for 4:2:0, 1x2 for 4:2:2), rounded and clipped as an encoder does. What synthetic test
    frames need: in-gamut YUV, as a camera gives it (a buffer of random bytes is mostly out of gamut)."""
    y0, m = matrix(name)
    rgb = np.asarray(rgb, np.float64)
    _, h, w = rgb.shape
    yuv = np.einsum("jc,chw->jhw", np.linalg.inv(m), rgb) + np.array([y0, 128.0, 128.0])[:, None, None]

    def q(a: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip(np.round(a), 0, 255), np.uint8)

    y, u, v = yuv
    if chroma in PACKED:
        u, v = q(u.reshape(h, w // 2, 2).mean(-1)), q(v.reshape(h, w // 2, 2).mean(-1))
        ys = q(y).reshape(h, w // 2, 2)
        quad = [ys[..., 0], u, ys[..., 1], v] if chroma == "YUYV" else [u, ys[..., 0], v, ys[..., 1]]
        return np.stack(quad, -1).reshape(h, 2 * w)
    u, v = (q(p.reshape(h // 2, 2, w // 2, 2).mean((1, 3))) for p in (u, v))
    if chroma == "I420":
        tail = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(h // 2, w)
    else:
        tail = np.stack([u, v] if chroma == "NV12" else [v, u], -1).reshape(h // 2, w)
    return np.concatenate([q(y), tail])
