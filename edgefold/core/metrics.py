"""Error statistics of a candidate's outputs against the reference's, and task-level agreement.

Task metrics judge what a user of the output sees, frame by frame:
- classifier-shaped outputs (N, K): top-1 agreement over frames, and the same rate estimated from the frames'
  top-1 margins (``top1_estimate``), which sees disagreement rates far below 1/N from N frames;
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
    top1_estimate: float | None = None  # classifier-shaped outputs: top-1 agreement estimated from the margins
    frame_margin: tuple[float, ...] = ()  # per row: the reference's top-1 lead over the next class (logit scale)
    frame_margin_drop: tuple[float, ...] = ()  # per row: how much of that lead the candidate loses

    @property
    def top1_judged(self) -> float | None:
        """The top-1 figure the floor judges: the lower of the agreement seen and the one estimated."""
        seen = [v for v in (self.top1_agreement, self.top1_estimate) if v is not None]
        return min(seen) if seen else None

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for key in ("frame_iou", "frame_false_positive", "frame_max_abs", "frame_floor", "frame_margin",
                    "frame_margin_drop"):
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
    margins: list[np.ndarray] = []
    drops: list[np.ndarray] = []
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
            margin, drop = top1_margins(flat_r, flat_g)
            margins.append(margin)
            drops.append(drop)
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
                       frame_max_abs=tuple(frame_max), frame_floor=tuple(floors or ()),
                       **_top1_estimate(margins, drops))


def _top1_estimate(margins: list[np.ndarray], drops: list[np.ndarray]) -> dict:
    if not margins:
        return {}
    m, d = np.concatenate(margins), np.concatenate(drops)
    return {"top1_estimate": 1.0 - top1_disagreement(m, d), "frame_margin": tuple(m.tolist()),
            "frame_margin_drop": tuple(d.tolist())}


def is_distribution(x: np.ndarray) -> bool:
    """Rows (frames x classes) that are probability distributions: non-negative, summing to 1 (a softmax)."""
    return bool(x.size and x.min() >= 0.0 and x.max() <= 1.0 and np.allclose(x.sum(axis=1), 1.0, atol=1e-3))


def logits(x: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """A classifier-shaped output (N, K) or (N, K, 1, 1) on the logit scale, in float64: where the reference
    (``like``, else ``x`` itself) is a probability distribution per row, its logarithm - the softmax's logits
    up to a constant per row, so differences are logit gaps - else the values as they are."""
    rows = lambda a: np.asarray(a, np.float64).reshape(np.shape(a)[0], -1)  # noqa: E731
    v = rows(x)
    if is_distribution(rows(x if like is None else like)):
        return np.log(np.maximum(v, np.finfo(np.float32).tiny))
    return v


def top1_margins(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (frames x classes): the reference's top-1 margin - the lead of its top class over the next, on
    the logit scale (``logits``) - and how much of that lead the candidate loses (its top-1 changes where the
    loss exceeds the margin)."""
    r, g = logits(ref), logits(got, like=ref)
    rows, top = np.arange(r.shape[0]), r.argmax(axis=1)
    others = np.arange(r.shape[1]) != top[:, None]

    def lead(x: np.ndarray) -> np.ndarray:
        return x[rows, top] - np.where(others, x, -np.inf).max(axis=1)

    margin = lead(r)
    return margin, margin - lead(g)


def top1_disagreement(margins: np.ndarray, drops: np.ndarray) -> float:
    """The share of frames whose top-1 a candidate changes, estimated from every frame's margin (``margins``,
    the reference's top-1 lead on the logit scale) and the part of it the candidate loses (``drops``).

    Model: drop = a * margin + e. The gain ``a`` (least squares through the origin) is a change of scale shared
    by all frames - INT8 shrinking every logit gap alike - which alone changes no top-1 while a < 1; the
    residual ``e`` is the frame's own error, taken as independent of its margin. A frame j flips when
    a * m_j + e > m_j, so the estimate is the share of pairs (i, j) with e_i > (1 - a) * m_j: every frame's
    error tried on every frame's margin, which resolves rates far below 1/N from N frames (the frames seen to
    flip are among them). A non-finite drop counts as every frame flipping."""
    m, d = np.asarray(margins, np.float64), np.asarray(drops, np.float64)
    if not m.size:
        return 0.0
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(m))):
        return 1.0
    energy = float(m @ m)
    a = float(d @ m) / energy if energy > 0 else 0.0
    residual = d - a * m
    thresholds = np.sort((1.0 - a) * m)
    below = np.searchsorted(thresholds, residual, side="left")  # per i: how many margins j its error exceeds
    return float(below.sum() / (m.size * m.size))


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
