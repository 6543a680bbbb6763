"""Where the error lives: a PNG of the largest per-pixel error of a spatial output, border ring outlined."""
from __future__ import annotations

import numpy as np

from edgefold.core.metrics import ring_width
from edgefold.errors import UsageError


def _hot(v: np.ndarray) -> np.ndarray:
    """0..1 -> black, red, yellow, white."""
    r = np.clip(3 * v, 0, 1)
    g = np.clip(3 * v - 1, 0, 1)
    b = np.clip(3 * v - 2, 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def heatmap_png(name: str, error: np.ndarray, title: str) -> bytes:
    """``error``: (H, W) max |reference - candidate| over frames and channels; returns a PNG."""
    from PIL import Image, ImageDraw

    peak = float(error.max())
    img = _hot(error / peak if peak > 0 else error)
    h, w = error.shape
    scale = max(1, 256 // max(1, min(h, w)))
    pic = Image.fromarray(img).resize((w * scale, h * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(pic)
    ring = ring_width(h, w) * scale
    draw.rectangle([ring, ring, w * scale - ring - 1, h * scale - ring - 1], outline=(0, 200, 255))
    canvas = Image.new("RGB", (pic.width, pic.height + 28), (0, 0, 0))
    canvas.paste(pic, (0, 28))
    ImageDraw.Draw(canvas).text((4, 2), f"{name}: max error {peak:.3g}\n{title}", fill=(255, 255, 255))
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def heatmap_for(comparison) -> tuple[str, bytes]:
    """Draw the spatial output with the largest relative error: (its name, the PNG)."""
    spatial = [o for o in comparison.outputs if o.name in comparison.errors]
    if not spatial:
        names = ", ".join(o.name for o in comparison.outputs)
        raise UsageError(f"--heatmap: no output of these models is a spatial (N, C, H, W) map (outputs: {names}); "
                         f"drop --heatmap")
    worst = max(spatial, key=lambda o: o.max_rel)
    where = f"border ring (cyan) {worst.border_max:.3g}, interior {worst.interior_max:.3g}" \
        if worst.border_max is not None else ""
    return worst.name, heatmap_png(worst.name, comparison.errors[worst.name], where)
