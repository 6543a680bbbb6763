"""The per-pixel affine channel map every recognised preprocessing chain composes into.

At every pixel, ``n[c] = sum_j A[c, j] * x[j] + b[c]`` with ``x`` the J raw input channels and ``n`` the C
channels a convolution reads. Gray replication is a column of ones, a BGR/RGB flip a permutation,
normalisation scales rows of ``A`` and sets ``b``. Pure numpy, float64 throughout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ChannelAffine:
    matrix: np.ndarray  # (C, J)
    offset: np.ndarray  # (C,)

    def __post_init__(self) -> None:
        a = np.asarray(self.matrix, dtype=np.float64)
        b = np.asarray(self.offset, dtype=np.float64).reshape(-1)
        if a.ndim != 2 or a.shape[0] != b.shape[0]:
            raise ValueError(f"affine shapes disagree: matrix {a.shape}, offset {b.shape}")
        object.__setattr__(self, "matrix", a)
        object.__setattr__(self, "offset", b)

    @classmethod
    def identity(cls, channels: int) -> ChannelAffine:
        return cls(np.eye(channels), np.zeros(channels))

    @property
    def out_channels(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.matrix.shape[1])

    def is_identity(self) -> bool:
        a, b = self.matrix, self.offset
        return a.shape[0] == a.shape[1] and bool(np.array_equal(a, np.eye(a.shape[0]))) and not b.any()

    def then(self, matrix: np.ndarray, offset: np.ndarray) -> ChannelAffine:
        """Compose: apply ``n -> matrix @ n + offset`` after this map."""
        m = np.asarray(matrix, dtype=np.float64)
        return ChannelAffine(m @ self.matrix, m @ self.offset + np.asarray(offset, dtype=np.float64))

    def broadcast_to(self, channels: int) -> ChannelAffine:
        """Implicit broadcast of a 1-channel tensor against a C-channel operand replicates the row."""
        if channels == self.out_channels:
            return self
        if self.out_channels != 1:
            raise ValueError(f"cannot broadcast {self.out_channels} channels to {channels}")
        return ChannelAffine(np.repeat(self.matrix, channels, axis=0), np.repeat(self.offset, channels))

    def scale_shift(self, scale: np.ndarray, shift: np.ndarray) -> ChannelAffine:
        """``n -> scale * n + shift`` per channel; scale/shift of length 1 or C (after broadcast)."""
        scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        shift = np.asarray(shift, dtype=np.float64).reshape(-1)
        base = self.broadcast_to(max(self.out_channels, scale.size, shift.size))
        c = base.out_channels
        scale = np.broadcast_to(scale, (c,))
        shift = np.broadcast_to(shift, (c,))
        return ChannelAffine(base.matrix * scale[:, None], base.offset * scale + shift)

    def select(self, rows: np.ndarray) -> ChannelAffine:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return ChannelAffine(self.matrix[rows], self.offset[rows])

    @staticmethod
    def stack(parts: list[ChannelAffine]) -> ChannelAffine:
        """Channel concatenation of maps over the same raw tensor."""
        return ChannelAffine(np.vstack([p.matrix for p in parts]), np.concatenate([p.offset for p in parts]))

    @staticmethod
    def block_diagonal(parts: list[ChannelAffine]) -> ChannelAffine:
        """Channel concatenation of maps over different raw tensors (their raw channels concatenate too)."""
        rows = sum(p.out_channels for p in parts)
        cols = sum(p.in_channels for p in parts)
        a = np.zeros((rows, cols))
        r = c = 0
        for p in parts:
            a[r:r + p.out_channels, c:c + p.in_channels] = p.matrix
            r += p.out_channels
            c += p.in_channels
        return ChannelAffine(a, np.concatenate([p.offset for p in parts]))

    def is_monotone_per_channel(self) -> bool:
        """Each output channel is an increasing function of at most one raw channel (MaxPool commutes)."""
        a = self.matrix
        nonzero = a != 0
        return bool(np.all(nonzero.sum(axis=1) <= 1) and np.all(a[nonzero] > 0))

    def is_diagonal(self) -> bool:
        a = self.matrix
        return a.shape[0] == a.shape[1] and bool(np.array_equal(a, np.diag(np.diag(a))))

    def to_json(self) -> dict:
        return {"matrix": self.matrix.tolist(), "offset": self.offset.tolist()}


def declared(channels: int, raw_channels: int, order: str, mean: tuple[float, ...],
             std: tuple[float, ...], scale: float) -> ChannelAffine:
    """The map ``n = (G x / scale - mean) / std`` a bare model expects, G the camera's pixel format (replicating
    gray, reversing BGR, ...; see ``core.contract.PixelFormat``), identity for a model's own channel order."""
    from edgefold.core.contract import pixel_format

    g = pixel_format(order).to_model(channels) if order not in ("as-original", "", None) else np.eye(channels)
    if g.shape[1] != raw_channels:
        raise ValueError(f"{order} input has {g.shape[1]} raw channels, not {raw_channels}")
    m = np.broadcast_to(np.asarray(mean, dtype=np.float64), (channels,))
    s = np.broadcast_to(np.asarray(std, dtype=np.float64), (channels,))
    return ChannelAffine(g, np.zeros(channels)).scale_shift(1.0 / (scale * s), -m / s)
