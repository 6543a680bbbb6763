"""Error statistics of a candidate's outputs against the reference's, and task-level agreement."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ring_width(h: int, w: int) -> int:
    """Width of the border ring reported separately for spatial outputs: 1/16 of the smaller side."""
    return max(1, min(h, w) // 16)


@dataclass(frozen=True)
class OutputStats:
    name: str
    max_abs: float
    max_rel: float  # max_abs / max |reference|
    mean_abs: float
    p99_abs: float
    border_max: float | None  # on the outer ring of spatial outputs
    interior_max: float | None
    reference_max: float
    top1_agreement: float | None  # classifier-shaped outputs: fraction of frames with the same argmax
    map_iou: float | None  # dense maps: IoU of the reference and candidate thresholded at map_threshold
    map_threshold: float | None
    passed: bool = True

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def with_verdict(self, passed: bool) -> OutputStats:
        return OutputStats(**{**self.__dict__, "passed": bool(passed)})


def is_classifier(shape: tuple) -> bool:
    return (len(shape) == 2 and shape[1] >= 2) or (len(shape) == 4 and shape[2:] == (1, 1) and shape[1] >= 2)


def is_dense_map(shape: tuple) -> bool:
    return len(shape) == 4 and min(shape[2:]) >= 4


def output_stats(name: str, refs: list[np.ndarray], gots: list[np.ndarray],
                 map_threshold: float | None = None) -> OutputStats:
    """Statistics of one output over all frames (lists of arrays of equal shapes, frame by frame)."""
    diffs, r_all, g_all = [], [], []
    border = interior = None
    top1 = []
    for r, g in zip(refs, gots):
        r = np.asarray(r, dtype=np.float64)
        g = np.asarray(g, dtype=np.float64)
        if r.shape != g.shape:
            inf = float("inf")
            return OutputStats(name, inf, inf, inf, inf, None, None, 0.0, None, None, None, False)
        d = np.abs(r - g)
        diffs.append(d.reshape(-1))
        r_all.append(r.reshape(-1))
        g_all.append(g.reshape(-1))
        if is_dense_map(d.shape):
            w = ring_width(*d.shape[2:])
            mask = np.ones(d.shape[2:], bool)
            mask[w:-w, w:-w] = False
            border = max(border or 0.0, float(d[:, :, mask].max(initial=0.0)))
            interior = max(interior or 0.0, float(d[:, :, ~mask].max(initial=0.0)))
        if is_classifier(r.shape):
            flat_r, flat_g = r.reshape(r.shape[0], -1), g.reshape(g.shape[0], -1)
            top1.extend((flat_r.argmax(axis=1) == flat_g.argmax(axis=1)).tolist())
    d = np.concatenate(diffs) if diffs else np.zeros(1)
    r_cat = np.concatenate(r_all) if r_all else np.zeros(1)
    g_cat = np.concatenate(g_all) if g_all else np.zeros(1)
    ref_max = float(np.abs(r_cat).max(initial=0.0))
    max_abs = float(d.max(initial=0.0)) if np.all(np.isfinite(d)) else float("inf")
    iou = threshold = None
    if refs and is_dense_map(np.shape(refs[0])):
        threshold = map_threshold if map_threshold is not None else float((r_cat.min() + r_cat.max()) / 2)
        a, b = r_cat > threshold, g_cat > threshold
        union = int((a | b).sum())
        iou = float((a & b).sum() / union) if union else 1.0
    return OutputStats(name, max_abs, max_abs / ref_max if ref_max else max_abs, float(d.mean()),
                       float(np.quantile(d, 0.99)), border, interior, ref_max,
                       float(np.mean(top1)) if top1 else None, iou, threshold)
