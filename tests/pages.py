"""Reproducible gray camera frames for text detectors: label/document pages drawn with Pillow's scalable
built-in font on plain, gradient and textured backgrounds, scikit-image's scanned `page` and `text`, and
text-free photos (for false positives). Nothing is downloaded; the same seed gives the same frames."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("LOT", "BATCH", "SERIAL", "No.", "EXP", "2026-11", "QC", "PASS", "inspection", "label", "part", "4711",
         "0x3F", "weight", "kg", "MADE", "IN", "line", "station", "camera", "OK", "A-17", "store", "dry", "place",
         "handle", "with", "care", "order", "ref", "customer", "shipping", "box", "12/24", "voltage", "230V")
PHOTOS = ("camera", "coffee", "chelsea", "moon", "coins", "brick", "grass", "gravel", "immunohistochemistry",
          "colorwheel", "astronaut")


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = (img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).round()
    return np.asarray(img, np.uint8)


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(_gray(img)).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _background(rng: np.random.Generator, size: tuple[int, int], kind: str) -> np.ndarray:
    h, w = size
    if kind == "plain":
        return np.full(size, rng.integers(170, 250), np.float64)
    if kind == "gradient":
        a, b = rng.integers(140, 250, 2)
        return np.linspace(a, b, w)[None, :].repeat(h, 0) * np.linspace(0.85, 1.0, h)[:, None]
    from skimage import data

    texture = _fit(getattr(data, str(rng.choice(["brick", "grass", "gravel"])))(), size).astype(np.float64)
    return 185 + 0.25 * (texture - texture.mean())


def text_page(seed: int, size: tuple[int, int] = (640, 640)) -> np.ndarray:
    """A label/document page: lines of words in several sizes, dark on a light background."""
    rng = np.random.default_rng(seed)
    kind = ("plain", "gradient", "textured")[seed % 3]
    page = Image.fromarray(np.clip(_background(rng, size, kind), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(page)
    y = int(rng.integers(8, 40))
    while y < size[0] - 20:
        font_px = int(rng.integers(14, 44))
        font = ImageFont.load_default(size=font_px)
        x = int(rng.integers(8, size[1] // 4))
        line = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(2, 7))))
        draw.text((x, y), line, fill=int(rng.integers(0, 70)), font=font)
        y += int(font_px * rng.uniform(1.4, 2.6))
    return np.asarray(page)


def scanned_pages(size: tuple[int, int] = (640, 640)) -> list[np.ndarray]:
    """scikit-image's real scans (`page`, `text`), tiled onto a frame of the detector's size."""
    from skimage import data

    out = []
    for name in ("page", "text"):
        img = getattr(data, name)()
        reps = (-(-size[0] // img.shape[0]), -(-size[1] // img.shape[1]))
        out.append(np.tile(img, reps)[: size[0], : size[1]])
    return out


def photos(size: tuple[int, int] = (640, 640)) -> list[np.ndarray]:
    """Text-free photos: what a detector must stay silent on."""
    from skimage import data

    return [_fit(getattr(data, name)(), size) for name in PHOTOS]


def write_folder(folder, frames: list[np.ndarray], prefix: str) -> None:  # noqa: ANN001
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(Path(folder) / f"{prefix}{i:03d}.png")
