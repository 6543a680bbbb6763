"""A YUV camera buffer composed into the stem conv(s) that read the converted frame: no RGB frame in the engine.

RGB = M @ (Y - y0, U - 128, V - 128) is linear with no constant once the planes are centred, so zero padding
of RGB is zero padding of the centred planes, and a stem conv on RGB splits exactly - borders included - into

    conv(Y - y0, W @ M[:, 0])                 full resolution, the stem's own kernel, stride and pads
  + conv(chroma - 128, W @ M[:, 1:] summed)   the chroma planes at their own resolution

For a subsampled axis (2 pixels share one chroma sample) and an even stride s, output i reads the chroma
samples (s/2) * i + floor((u - pad) / 2) for its taps u: a conv of stride s/2 whose kernel sums the taps that
land on one sample (a 7x7/s2/p3 stem becomes a 4x4/s1 chroma conv). An odd stride sees both parities and is
left to the front end (``frontend.pixels``), as is any stem this module cannot prove it reads the whole frame.

Planning here is pure (weights and pads from numbers); ``pixels.attach`` changes the graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChromaAxis:
    """How one spatial axis of the chroma planes feeds a stem conv."""

    sample_of_tap: tuple[int, ...]  # the chroma kernel position of each stem tap
    kernel: int
    stride: int
    pad_before: int
    pad_after: int
    keep: int | None  # crop the planes to this many samples first (None: all of them)


def chroma_axis(kernel: int, stride: int, pads: tuple[int, int], out_len: int, full_len: int,
                factor: int) -> ChromaAxis | None:
    """The chroma conv along one axis whose ``factor`` (1 or 2) pixels share a sample; None if the stride is not
    a multiple of the factor (then the output's taps see a varying phase)."""
    pad_before = pads[0]
    if stride % factor or full_len % factor:
        return None
    if factor == 1:
        return ChromaAxis(tuple(range(kernel)), kernel, stride, pad_before, pads[1], None)
    offsets = [(u - pad_before) // 2 for u in range(kernel)]
    lo, hi = offsets[0], offsets[-1]
    step = stride // 2
    length = full_len // 2
    needed = step * (out_len - 1) + hi + 1  # samples the last output reads, counted from sample 0
    return ChromaAxis(tuple(o - lo for o in offsets), hi - lo + 1, step, -lo, max(0, needed - length),
                      needed if needed < length else None)


@dataclass(frozen=True)
class ChromaStem:
    luma: np.ndarray  # (O, 1, kh, kw): the stem on Y - y0
    chroma: np.ndarray  # (O, 2, nh, nw): the stem on (U - 128, V - 128) at chroma resolution
    rows: ChromaAxis
    cols: ChromaAxis

    @property
    def macs_per_output(self) -> int:
        return int(self.luma[0].size + self.chroma[0].size)


def plan(weight: np.ndarray, strides: tuple[int, int], pads: tuple[int, int, int, int], size: tuple[int, int],
         out_size: tuple[int, int], factors: tuple[int, int], rgb_of_yuv: np.ndarray) -> ChromaStem | None:
    """The split of a stem conv (weight (O, 3, kh, kw) on RGB) for Y and chroma subsampled by ``factors`` (rows,
    columns); ``rgb_of_yuv`` (3, 3) maps centred (Y, U, V) to the conv's RGB channels. None when not exact."""
    o, c, kh, kw = weight.shape
    if c != 3:
        return None
    rows = chroma_axis(kh, strides[0], (pads[0], pads[2]), out_size[0], size[0], factors[0])
    cols = chroma_axis(kw, strides[1], (pads[1], pads[3]), out_size[1], size[1], factors[1])
    if rows is None or cols is None:
        return None
    w = weight.astype(np.float64)
    luma = np.einsum("ocuv,c->ouv", w, rgb_of_yuv[:, 0])[:, None]
    per_tap = np.einsum("ocuv,cj->ojuv", w, rgb_of_yuv[:, 1:])  # (O, 2, kh, kw)
    chroma = np.zeros((o, 2, rows.kernel, cols.kernel))
    for u in range(kh):
        for v in range(kw):
            chroma[:, :, rows.sample_of_tap[u], cols.sample_of_tap[v]] += per_tap[:, :, u, v]
    return ChromaStem(luma.astype(np.float32), chroma.astype(np.float32), rows, cols)


@dataclass(frozen=True)
class Window:
    """A sliding-window op along one axis (conv or pool): effective kernel, stride, leading and trailing pad.
    ``Window(1, 1, 0, 0)`` is the identity."""

    kernel: int
    stride: int
    before: int
    after: int

    def out_len(self, n: int) -> int:
        return (n + self.before + self.after - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class MosaicAxis:
    """One spatial axis of a stem conv composed with a bilinear demosaic, assembled after ``tail`` (the local op
    that follows the stem, or the identity).

    The tail's outputs ``[before, length - after)`` read only stem outputs whose taps read pixels with the plain
    bilinear demosaic (rows 1 .. H-2: OpenCV copies the outermost row from its neighbour) and no padding; the
    composed conv on the mosaic rows ``interior_px`` gives those exactly. The first ``before`` tail outputs come
    from a strip: mosaic rows ``[0, lead_px)`` demosaiced as the whole frame would be, RGB rows ``[0, lead_keep)``
    convolved with the stem's leading pad only, then the tail with its leading pad only. The last ``after``
    likewise from mosaic rows ``[trail_px, n)`` (an even start: the pattern is unchanged), RGB rows from
    ``trail_keep`` on (relative to ``trail_px``)."""

    length: int
    before: int
    after: int
    interior_px: tuple[int, int]
    lead_px: int
    lead_keep: int
    trail_px: int
    trail_keep: int


def mosaic_axis(stem: Window, full_len: int, tail: Window = Window(1, 1, 0, 0)) -> MosaicAxis | None:
    """None when the stem's stride is odd (each output would see another colour phase) or the frame is too small
    to have a tail output away from both edges."""
    s, k, pb = stem.stride, stem.kernel, stem.before
    if s % 2:
        return None
    stem_len = stem.out_len(full_len)
    exact0 = (pb + s) // s  # the first stem output whose taps all read rows >= 1
    exact1 = min(stem_len - 1, (full_len - 1 + pb - k) // s)  # the last whose taps read rows <= full_len - 2
    length = tail.out_len(stem_len)
    q0 = -(-(exact0 + tail.before) // tail.stride)
    q1 = min(length - 1, (exact1 + tail.before - tail.kernel + 1) // tail.stride)
    if q0 > q1:
        return None
    a, b = tail.stride * q0 - tail.before, tail.stride * q1 - tail.before + tail.kernel  # stem rows read
    lead_stem = tail.stride * (q0 - 1) - tail.before + tail.kernel
    lead_keep = s * (lead_stem - 1) - pb + k
    trail_stem = tail.stride * (q1 + 1) - tail.before
    start = s * trail_stem - pb  # the first RGB row the trailing strip reads
    after = length - 1 - q1
    if lead_keep + 1 > full_len or (after and (start < 1 or trail_stem < 0)):
        return None
    even = min((start - 1) // 2 * 2, (full_len - 3) // 2 * 2) if after else full_len  # a demosaic needs 3 rows
    return MosaicAxis(length, q0, after, (s * a - pb - 1, s * (b - 1) - pb + k + 1),
                      min(full_len, max(lead_keep + 1, 3)), lead_keep, even, start - even)


@dataclass(frozen=True)
class MosaicStem:
    kernel: np.ndarray  # (O, 1, kh + 2, kw + 2): the stem on the mosaic, valid away from the frame's edges
    rows: MosaicAxis
    cols: MosaicAxis

    @property
    def macs_per_output(self) -> int:
        return int(self.kernel[0].size)


def plan_mosaic(weight: np.ndarray, strides: tuple[int, int], pads: tuple[int, int, int, int],
                size: tuple[int, int], demosaic: np.ndarray, scale: float,
                tail: tuple[Window, Window] = (Window(1, 1, 0, 0), Window(1, 1, 0, 0))) -> MosaicStem | None:
    """A stem conv (O, 3, kh, kw) on the demosaiced frame as one conv on the mosaic: with an even stride every
    output sees the same phase at each tap, so the kernel is the stem's taps convolved with the demosaic's 3x3
    weights of that tap's phase. ``demosaic`` is ``bayer.neighbour_weights``: [py, px, colour, 3, 3]."""
    o, c, kh, kw = weight.shape
    rows = mosaic_axis(Window(kh, strides[0], pads[0], pads[2]), size[0], tail[0])
    cols = mosaic_axis(Window(kw, strides[1], pads[1], pads[3]), size[1], tail[1])
    if c != 3 or rows is None or cols is None:
        return None
    k = np.zeros((o, kh + 2, kw + 2))
    w = weight.astype(np.float64) * scale
    for u in range(kh):
        for v in range(kw):
            d = demosaic[(u - pads[0]) % 2, (v - pads[1]) % 2]  # (colour, 3, 3) at this tap's phase
            k[:, u:u + 3, v:v + 3] += np.einsum("oc,cab->oab", w[:, :, u, v], d)
    return MosaicStem(k[:, None].astype(np.float32), rows, cols)


def neutral_colour(weight: np.ndarray, strides: tuple[int, int], pads: tuple[int, int, int, int],
                   size: tuple[int, int], border: np.ndarray) -> np.ndarray | None:
    """The constant pixel value x* (per input channel) the fold's border term stands for, or None.

    The fold pads the *normalised* frame with zeros, which for a conv on raw pixels is the border term: at each
    output, the weights of its taps outside the frame times the pixel value that normalises to zero (the conv's
    folded bias assumed that value under every tap).
    When one x* explains the whole term (least squares over every distinct edge pattern, then checked), the
    frame centred at x* can be zero-padded instead and the term dropped: conv(x - x*) + bias + sum(W) x*."""
    o, c, kh, kw = weight.shape
    w = weight.astype(np.float64)

    def patterns(n: int, k: int, s: int, before: int, out_len: int) -> dict[tuple[int, ...], int]:
        """Each distinct in-frame tap mask along one axis -> an output index that has it."""
        seen: dict[tuple[int, ...], int] = {}
        for i in range(out_len):
            mask = tuple(int(0 <= s * i - before + u < n) for u in range(k))
            seen.setdefault(mask, i)
        return seen

    ho, wo = border.shape[-2:]
    rows = patterns(size[0], kh, strides[0], pads[0], ho)
    cols = patterns(size[1], kw, strides[1], pads[1], wo)
    a, b = [], []
    for rmask, i in rows.items():
        for cmask, j in cols.items():
            inside = np.einsum("ocuv,u,v->oc", w, np.array(rmask, np.float64), np.array(cmask, np.float64))
            a.append(w.sum(axis=(2, 3)) - inside)  # (O, C): the weights outside the frame
            b.append(border.reshape(-1, o, ho, wo)[0, :, i, j].astype(np.float64))
    a_m, b_v = np.concatenate(a), np.concatenate(b)
    x, *_ = np.linalg.lstsq(a_m, b_v, rcond=None)
    if np.abs(a_m @ x - b_v).max() > 1e-4 * (1.0 + np.abs(b_v).max()):
        return None
    return x
