"""Error statistics of a candidate's outputs against the reference's, and task-level agreement.

Task metrics judge what a user of the output sees, frame by frame:
- classifier-shaped outputs (N, K): top-1 agreement over frames;
- dense maps (N, C, H, W), thresholded at ``map_threshold`` (default: mid-range of the reference): IoU on
  the frames whose reference map has positives (at least ``POSITIVE_FRACTION`` of its pixels), and the
  false-positive rate - the fraction of pixels the candidate marks that the reference does not - on the
  frames without (a text-free photo for a text detector). A frame without positives has no IoU: it
  would be 0 % for one stray pixel and 100 % for none, which says nothing about the map;
- every output: the cosine similarity of candidate and reference, the smallest over frames (raw
  regression and detection heads, where no threshold applies).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

POSITIVE_FRACTION = 1e-3  # a reference map "has positives" when at least 0.1 % of its pixels are above threshold


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
    map_iou: float | None  # dense maps: mean IoU over the frames whose reference has positives
    map_threshold: float | None
    passed: bool = True
    map_iou_min: float | None = None  # the worst of those frames
    false_positive: float | None = None  # dense maps: candidate-only positive pixels on frames without positives
    cosine: float | None = None  # smallest per-frame cosine similarity (1.0 = same direction)
    frame_iou: tuple[float | None, ...] = ()  # per frame; None where the reference has no positives
    frame_false_positive: tuple[float | None, ...] = ()  # per frame; None where the reference has positives
    decided_by: str = ""  # which metric(s) the verdict rests on (set by the tolerance)
    frame_max_abs: tuple[float, ...] = ()  # max |candidate - reference| per frame
    frame_floor: tuple[float, ...] = ()  # the reference's own float32 noise floor per frame; () if not measured
    numeric_decides: bool = True  # whether the numeric figures are part of the verdict (INT8: the task metrics)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for key in ("frame_iou", "frame_false_positive", "frame_max_abs", "frame_floor"):
            d[key] = list(d[key])
        return d

    def with_verdict(self, passed: bool, decided_by: str = "") -> OutputStats:
        return dataclasses.replace(self, passed=bool(passed), decided_by=decided_by or self.decided_by)


def is_classifier(shape: tuple) -> bool:
    return (len(shape) == 2 and shape[1] >= 2) or (len(shape) == 4 and shape[2:] == (1, 1) and shape[1] >= 2)


def is_dense_map(shape: tuple) -> bool:
    return len(shape) == 4 and min(shape[2:]) >= 4


def channels_first(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """A 4-D output of an NHWC model (tf2onnx transposes back) as N x C x H x W, the layout the border ring, the
    map statistics and the heatmap read; anything else as it is."""
    x = np.asarray(x)
    return np.moveaxis(x, 3, 1) if channels_last and x.ndim == 4 else x


def output_stats(name: str, refs: list[np.ndarray], gots: list[np.ndarray],
                 map_threshold: float | None = None, floors: list[float] | None = None,
                 channels_last: bool = False) -> OutputStats:
    """Statistics of one output over all frames (lists of arrays of equal shapes, frame by frame); ``floors``:
    the reference's own noise floor per frame, where it was measured; ``channels_last``: 4-D outputs are NHWC."""
    refs = [channels_first(r, channels_last) for r in refs]
    gots = [channels_first(g, channels_last) for g in gots]
    diffs, r_all, g_all = [], [], []
    frame_max: list[float] = []
    inf = float("inf")
    border = interior = None
    top1 = []
    for r, g in zip(refs, gots):
        # float32 outputs stay float32 (no float64 copies of every frame: at camera resolutions those were most
        # of a fold's verification time, in page faults); the difference of two float32 values is exact to
        # float32 rounding, which is what the statistics report
        wide = np.result_type(np.asarray(r).dtype, np.asarray(g).dtype, np.float32)
        r = np.asarray(r, dtype=wide)
        g = np.asarray(g, dtype=wide)
        if r.shape != g.shape:
            return OutputStats(name, inf, inf, inf, inf, None, None, 0.0, None, None, None, False)
        d = np.abs(r - g)
        frame_max.append(float(d.max(initial=0.0)) if np.all(np.isfinite(d)) else inf)
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
    ref_max = float(np.abs(r_cat).max(initial=0.0))
    max_abs = float(d.max(initial=0.0)) if np.all(np.isfinite(d)) else float("inf")
    cosines = [cosine_similarity(r, g) for r, g in zip(r_all, g_all)]
    iou = threshold = iou_min = false_pos = None
    frame_iou: tuple[float | None, ...] = ()
    frame_fp: tuple[float | None, ...] = ()
    if refs and is_dense_map(np.shape(refs[0])):
        threshold = map_threshold if map_threshold is not None else float((r_cat.min() + r_cat.max()) / 2)
        frame_iou, frame_fp = map_agreement(r_all, g_all, threshold)
        ious = [v for v in frame_iou if v is not None]
        fps = [v for v in frame_fp if v is not None]
        iou = float(np.mean(ious)) if ious else None
        iou_min = float(min(ious)) if ious else None
        false_pos = float(np.mean(fps)) if fps else None
    return OutputStats(name, max_abs, max_abs / ref_max if ref_max else max_abs, float(d.mean()),
                       float(np.quantile(d, 0.99)), border, interior, ref_max,
                       float(np.mean(top1)) if top1 else None, iou, threshold, True, iou_min, false_pos,
                       float(min(cosines)) if cosines else None, frame_iou, frame_fp,
                       frame_max_abs=tuple(frame_max), frame_floor=tuple(floors or ()))


def cosine_similarity(r: np.ndarray, g: np.ndarray) -> float:
    """1.0 for equal directions; two all-zero arrays agree (1.0), one all-zero against another does not (0.0)."""
    dot = lambda a, b: float(np.einsum("i,i->", a.reshape(-1), b.reshape(-1), dtype=np.float64))  # noqa: E731
    nr, ng = np.sqrt(dot(r, r)), np.sqrt(dot(g, g))  # accumulated in float64 without a float64 copy
    if nr == 0.0 or ng == 0.0:
        return 1.0 if nr == ng else 0.0
    if not (np.isfinite(nr) and np.isfinite(ng)):
        return 0.0
    return float(dot(r, g) / (nr * ng))


def map_agreement(refs: list[np.ndarray], gots: list[np.ndarray], threshold: float
                  ) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
    """Per frame: IoU where the reference has positives, else the candidate's false-positive pixel rate."""
    ious: list[float | None] = []
    fps: list[float | None] = []
    for r, g in zip(refs, gots):
        a, b = np.asarray(r) > threshold, np.asarray(g) > threshold
        if a.mean() >= POSITIVE_FRACTION:
            ious.append(float((a & b).sum() / (a | b).sum()))
            fps.append(None)
        else:
            ious.append(None)
            fps.append(float((b & ~a).mean()) if b.size else 0.0)
    return tuple(ious), tuple(fps)
