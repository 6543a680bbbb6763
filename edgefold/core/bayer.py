"""Bilinear demosaicing of a Bayer mosaic, as a linear map: the weights and a float64 reference.

The rule is the one OpenCV's ``cvtColor(COLOR_Bayer..2RGB)`` (non-VNG, non-EA) applies: a pixel keeps its own
colour; green at a red or blue site is the mean of its four edge neighbours; red or blue at a green site is the
mean of the two neighbours of that colour (left/right or up/down); blue at a red site (and red at a blue
site) is the mean of the four diagonal neighbours. The outermost rows and columns are copies of their
neighbours (row 0 = row 1, the last row = the one before it, the same for columns), so the map is linear
everywhere, borders included. OpenCV then rounds to uint8; the float result here is what edgefold folds.

Patterns are named by the sensor, as GenICam does (``BayerRG8``: the top-left 2x2 block is R G / G B); OpenCV
names its conversion codes by a shifted convention (opencv issue 19629), which ``tests/test_pixel_formats.py``
pins against cv2.
"""
from __future__ import annotations

import numpy as np

from edgefold.errors import UsageError

COLOURS = "RGB"
# OpenCV's conversion code for each sensor pattern (its names are shifted: sensor RGGB is BayerBG2RGB)
OPENCV_CODES = {"RGGB": "COLOR_BayerBG2RGB", "BGGR": "COLOR_BayerRG2RGB", "GRBG": "COLOR_BayerGB2RGB",
                "GBRG": "COLOR_BayerGR2RGB"}


def phase_colours(pattern: str) -> list[str]:
    """Colour of each phase (dy, dx) in order (0,0), (0,1), (1,0), (1,1): "RGGB" -> R, G, G, B."""
    if sorted(pattern) != sorted("RGGB"):
        raise UsageError(f"not a Bayer pattern: {pattern!r} (a 2x2 block of R, G, G, B)")
    return list(pattern)


def neighbour_weights(pattern: str) -> np.ndarray:
    """w[py, px, c, dy + 1, dx + 1]: colour c at a pixel of phase (py, px) from its 3x3 neighbourhood."""
    col = phase_colours(pattern)

    def colour(y: int, x: int) -> str:
        return col[(y % 2) * 2 + (x % 2)]

    w = np.zeros((2, 2, 3, 3, 3))
    for py in range(2):
        for px in range(2):
            site = colour(py, px)
            for c, name in enumerate(COLOURS):
                k = w[py, px, c]
                if name == site:
                    k[1, 1] = 1.0
                elif name == "G":  # at R or B: the four edge neighbours are green
                    k[0, 1] = k[2, 1] = k[1, 0] = k[1, 2] = 0.25
                elif site == "G":  # R or B at a green site: the pair of that colour
                    if colour(py, px + 1) == name:
                        k[1, 0] = k[1, 2] = 0.5
                    else:
                        k[0, 1] = k[2, 1] = 0.5
                else:  # B at R, R at B: the diagonals
                    k[0, 0] = k[0, 2] = k[2, 0] = k[2, 2] = 0.25
    return w


def demosaic(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W) mosaic -> (3, H, W) float64 RGB, bilinear, borders as OpenCV fills them (H, W >= 3)."""
    m = np.asarray(mosaic, np.float64)
    h, w = m.shape
    if h < 3 or w < 3:
        raise UsageError(f"a Bayer frame needs at least 3x3 pixels, got {h}x{w}")
    weights = neighbour_weights(pattern)
    padded = np.pad(m, 1)
    out = np.zeros((3, h, w))
    for py in range(2):
        for px in range(2):
            for c in range(3):
                k = weights[py, px, c]
                acc = np.zeros((h, w))
                for dy in range(3):
                    for dx in range(3):
                        if k[dy, dx]:
                            acc += k[dy, dx] * padded[dy:dy + h, dx:dx + w]
                out[c, py::2, px::2] = acc[py::2, px::2]
    out[:, 0], out[:, -1] = out[:, 1], out[:, -2]
    out[:, :, 0], out[:, :, -1] = out[:, :, 1], out[:, :, -2]
    return out


def phase_conv_weights(pattern: str) -> np.ndarray:
    """The demosaic as one conv at half resolution: SpaceToDepth(2) gives the 4 phase planes (DCR order:
    channel = 2 * dy + dx); a 3x3 conv (pad 1) gives 12 channels = 4 output phases x 3 colours, in the order
    DepthToSpace(2, DCR) puts back as (3, H, W): channel = phase * 3 + colour."""
    w = neighbour_weights(pattern)
    k = np.zeros((12, 4, 3, 3))
    for py in range(2):
        for px in range(2):
            for c in range(3):
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        v = w[py, px, c, dy + 1, dx + 1]
                        if not v:
                            continue
                        y, x = py + dy, px + dx  # full-resolution offset from the block's top-left
                        src_phase = (y % 2) * 2 + (x % 2)
                        k[(py * 2 + px) * 3 + c, src_phase, y // 2 + 1, x // 2 + 1] += v
    return k
