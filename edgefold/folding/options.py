"""The one options object of ``edgefold fold``; the CLI maps its flags onto it."""
from __future__ import annotations

import math
from dataclasses import dataclass

from edgefold.errors import UsageError


@dataclass(frozen=True)
class FoldOptions:
    # what the camera delivers: None (auto: keep the model's channels), "gray", "rgb" or "bgr"
    channels: str | None = None
    # normalisation a bare model expects, n = (x / scale - mean) / std, in the model's channel order
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    scale: float | None = None
    # the declared mean/std describe what the graph's input expects even though the graph does arithmetic on
    # it (it re-normalises, as torchvision's transform_input does): compose the two instead of refusing
    compose: bool = False
    input_dtype: str | None = None  # "uint8" | "float32"; None keeps the original input's type
    input_name: str | None = None  # None keeps the original name
    border: str = "exact"  # "exact" | "approx"
    input_size: tuple[int, int] | None = None  # fix H, W of a dynamic model before folding
    camera: str | None = None  # the --pixel-format a front end will add after this fold (named in messages)
    # the folded convs read raw + raw_offset (an explicit Add kept in the graph); INT8 builds use -128 so a
    # symmetric int8 tensor with scale 1.0 holds every 0..255 pixel exactly
    raw_offset: float = 0.0
    verify: bool = True
    # frame sizes for dynamic H/W; None: odd sizes, then multiples of 32 if the original cannot run those
    verify_sizes: tuple[tuple[int, int], ...] | None = None
    rtol: float = 1e-4  # of the largest |reference| output value
    atol: float = 1e-6

    def __post_init__(self) -> None:
        if self.channels not in (None, "gray", "rgb", "bgr"):
            raise UsageError(f"--channels must be gray, rgb or bgr, not {self.channels!r}")
        if self.border not in ("exact", "approx"):
            raise UsageError(f"--border must be exact or approx, not {self.border!r}")
        if self.input_dtype not in (None, "uint8", "float32"):
            raise UsageError(f"--input-dtype must be uint8 or float32, not {self.input_dtype!r}")
        for flag, values in (("--mean", self.mean), ("--std", self.std), ("--scale", (self.scale,))):
            if values is not None and not all(v is None or math.isfinite(v) for v in values):
                raise UsageError(f"{flag} must be finite numbers, got {values}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise UsageError("--std has a zero: the normalisation would divide by zero")
        if self.scale is not None and self.scale == 0:
            raise UsageError("--scale must not be 0")
        for flag, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None and len(values) not in (1, 3):
                raise UsageError(f"{flag} takes 1 or 3 comma-separated values, got {len(values)}")

    @property
    def declares_normalisation(self) -> bool:
        return self.mean is not None or self.std is not None or self.scale is not None
