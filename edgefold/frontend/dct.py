"""A DCT front end as one convolution: raw pixels -> selected 8x8 block-DCT coefficients.

An orthonormal 8x8 DCT-II of every non-overlapping block is a stride-8, 8x8 conv with 64 output channels
whose weights are the basis images ``B[u, v, x, y] = a(u) a(v) cos((2x+1) u pi / 16) cos((2y+1) v pi / 16)``
(``a(0) = sqrt(1/8)``, else ``sqrt(2/8)``). Colour conversion to YCbCr (JPEG / BT.601 full range) and the
JPEG level shift (-128) are per-pixel affine maps, and a conv without padding absorbs them exactly
(``W' = W A``, bias ``sum W b``). Static channel selection keeps output channels.

Channel order: component-major (Y, then Cb, Cr), within a component the coefficient index in row-major
``u * 8 + v`` or zig-zag order (JPEG's), then the selection in the order given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefold.core.affine import ChannelAffine
from edgefold.errors import UsageError

# JPEG (JFIF) full-range BT.601: Y, Cb, Cr from R, G, B, with Cb/Cr centred at 128
YCBCR = ChannelAffine(np.array([[0.299, 0.587, 0.114],
                                [-0.168736, -0.331264, 0.5],
                                [0.5, -0.418688, -0.081312]]), np.array([0.0, 128.0, 128.0]))


def zigzag() -> list[int]:
    """Row-major indices u*8+v in JPEG zig-zag order."""
    order = sorted(((u, v) for u in range(8) for v in range(8)),
                   key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]))
    return [u * 8 + v for u, v in order]


def basis() -> np.ndarray:
    """(64, 8, 8) orthonormal DCT-II basis images, row-major coefficient index u*8+v."""
    k = np.arange(8)
    alpha = np.full(8, np.sqrt(2 / 8))
    alpha[0] = np.sqrt(1 / 8)
    c = alpha[:, None] * np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16)  # (u, x)
    return np.einsum("ux,vy->uvxy", c, c).reshape(64, 8, 8)


@dataclass(frozen=True)
class DctSpec:
    components: str = "y"  # "y" (gray -> Y) or "ycbcr" (RGB -> YCbCr)
    order: str = "zigzag"  # "zigzag" | "rowmajor": the index space of ``select``
    select: tuple[int, ...] | None = None  # channel indices (component-major: comp * 64 + index)
    select_low: int | None = None  # the N lowest zig-zag coefficients of every component
    level_shift: bool = True  # subtract 128 before the DCT, as JPEG does

    def __post_init__(self) -> None:
        if self.components not in ("y", "ycbcr"):
            raise UsageError(f"--components must be y or ycbcr, not {self.components!r}")
        if self.order not in ("zigzag", "rowmajor"):
            raise UsageError(f"--order must be zigzag or rowmajor, not {self.order!r}")
        if self.select is not None and self.select_low is not None:
            raise UsageError("give --select or --select-low, not both")
        n = self.n_components * 64
        if self.select is not None and (not self.select or any(not 0 <= i < n for i in self.select)):
            raise UsageError(f"--select indices must be in 0..{n - 1}")
        if self.select_low is not None and not 1 <= self.select_low <= 64:
            raise UsageError("--select-low must be 1..64")

    @property
    def n_components(self) -> int:
        return 1 if self.components == "y" else 3

    @property
    def raw_channels(self) -> int:
        return self.n_components

    def channels(self) -> list[tuple[int, int]]:
        """(component, row-major coefficient index) of every output channel, in output order."""
        index_order = zigzag() if self.order == "zigzag" else list(range(64))
        full = [(c, index_order[i]) for c in range(self.n_components) for i in range(64)]
        if self.select is not None:
            return [full[i] for i in self.select]
        if self.select_low is not None:
            zz = zigzag()
            return [(c, zz[i]) for c in range(self.n_components) for i in range(self.select_low)]
        return full

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(W (C_out, J, 8, 8), bias (C_out,)) on raw pixels, colour conversion and level shift folded in."""
        b = basis()
        chans = self.channels()
        w = np.zeros((len(chans), self.n_components, 8, 8))
        for o, (comp, idx) in enumerate(chans):
            w[o, comp] = b[idx]
        # per-pixel affine from raw pixels to the components the DCT reads
        aff = YCBCR if self.components == "ycbcr" else ChannelAffine.identity(1)
        if self.level_shift:
            aff = ChannelAffine(aff.matrix, aff.offset - 128.0)
        w_raw = np.einsum("ocxy,cj->ojxy", w, aff.matrix)
        bias = np.einsum("ocxy,c->o", w, aff.offset)  # no padding: every tap is inside, exact
        return w_raw, bias


def reference_coefficients(image: np.ndarray, spec: DctSpec) -> np.ndarray:
    """(C_out, H/8, W/8) with scipy's orthonormal DCT per block - the independent check of the conv."""
    from scipy.fft import dctn

    x = np.asarray(image, dtype=np.float64)
    if spec.components == "y":
        comps = x[None] if x.ndim == 2 else x
    else:
        comps = np.einsum("cj,hwj->chw", YCBCR.matrix, x) + YCBCR.offset[:, None, None]
    if spec.level_shift:
        comps = comps - 128.0
    h8, w8 = comps.shape[1] // 8, comps.shape[2] // 8
    blocks = comps[:, : h8 * 8, : w8 * 8].reshape(comps.shape[0], h8, 8, w8, 8).transpose(0, 1, 3, 2, 4)
    coef = dctn(blocks, axes=(3, 4), norm="ortho").reshape(comps.shape[0], h8, w8, 64)
    return np.stack([coef[c, :, :, idx] for c, idx in spec.channels()])
