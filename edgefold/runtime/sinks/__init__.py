"""Where ``edgefold run`` results go: a JSONL line per frame, an ``.npz`` per frame, a progress bar, a live page
(``edgefold.runtime.sinks.view``). Every sink writes as results arrive and flushes, so a run that stops
(Ctrl-C, a lost camera) keeps everything up to its last frame."""
from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgefold.core.metrics import is_classifier, is_dense_map
from edgefold.errors import UsageError
from edgefold.runtime.pipeline import CameraStats, Result

MAX_BOXES = 20  # boxes listed per map and frame (the largest)


def summarise(value: np.ndarray, top: int = 5) -> dict[str, Any]:
    """One frame's output (batch axis of length 1) as what fits it: top-k for a classifier; positive share and
    boxes (x, y, w, h of connected regions, largest first) for a dense map; statistics otherwise."""
    shape = tuple(value.shape)
    if is_classifier(shape):
        scores = value.reshape(-1)
        order = np.argsort(-scores)[:top]
        return {"top": [[int(i), float(scores[i])] for i in order]}
    if is_dense_map(shape) and shape[1] == 1:
        plane = value[0, 0]
        mask = plane > map_threshold(plane)
        return {"positive": float(mask.mean()), "boxes": boxes(mask)}
    v = value.astype(np.float64)
    return {"shape": list(shape), "min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
            "std": float(v.std())}


def map_threshold(plane: np.ndarray) -> float:
    """0.5 for a probability map (values within 0..1), 0 for logits."""
    return 0.5 if plane.min() >= 0 and plane.max() <= 1 else 0.0


def boxes(mask: np.ndarray) -> list[list[int]]:
    try:
        import cv2
    except ImportError:
        return []
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    found = sorted((stats[i] for i in range(1, n)), key=lambda s: -int(s[4]))[:MAX_BOXES]
    return [[int(s[0]), int(s[1]), int(s[2]), int(s[3])] for s in found]


class JsonlSink:
    """``--out FILE.jsonl``: one line per frame - camera, frame id, the camera's timestamp, latency, outputs."""

    def __init__(self, path: str | Path, top: int = 5) -> None:
        self.path = Path(path)
        if self.path.is_dir() or not self.path.parent.is_dir():
            raise UsageError(f"--out {path}: {'is a folder' if self.path.is_dir() else 'its folder does not exist'}; "
                             f"name a file in an existing folder")
        self.top = top
        self.file: IO[str] | None = None

    def add(self, result: Result, stats: CameraStats) -> None:
        if self.file is None:  # created with the first result: a run refused at start writes nothing
            self.file = self.path.open("w")
        f = result.frame
        line = {"camera": f.camera, "frame_id": f.frame_id, "timestamp_ns": f.timestamp_ns,
                "latency_ms": round(result.latency * 1e3, 3),
                "outputs": {name: summarise(v, self.top) for name, v in result.outputs.items()}}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class RecordSink:
    """``--record DIR``: ``CAMERA-FRAMEID.npz`` per frame with ``raw`` (the buffer as the engine read it) and each
    output by name, for checking offline."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--record {folder}: exists and is not a folder; name a folder")
        self.made = False
        self._part: Path | None = None

    def add(self, result: Result, stats: CameraStats) -> None:
        if not self.made:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.made = True
        f = result.frame
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {"raw": f.raw, **{f"output:{k}": v for k, v in result.outputs.items()}}
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f.camera).strip("_") or "camera"
        target = self.folder / f"{name}-{f.frame_id:08d}.npz"
        tmp = target.with_suffix(".npz.part")
        self._part = tmp
        tmp.write_bytes(buf.getvalue())
        tmp.replace(target)  # a stopped run leaves whole files only
        self._part = None

    def close(self) -> None:
        if self._part is not None:  # interrupted while writing one: no partial file stays
            self._part.unlink(missing_ok=True)


def recorded(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(raw, outputs by name) of one ``--record`` file."""
    with np.load(path, allow_pickle=False) as data:
        return data["raw"], {k[len("output:"):]: data[k] for k in data.files if k.startswith("output:")}


class ProgressSink:
    """A tqdm bar on stderr with frames/s, p50 latency and drops (where stderr is a terminal, or ``force``)."""

    def __init__(self, total: int | None, force: bool = False) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=not (force or sys.stderr.isatty()),
                        dynamic_ncols=True)
        self.stats: dict[str, CameraStats] = {}

    def add(self, result: Result, stats: CameraStats) -> None:
        self.stats[stats.name] = stats
        self.bar.update(1)
        if self.bar.n % 10 == 1:
            cams = list(self.stats.values())
            self.bar.set_postfix_str(f"{sum(c.fps for c in cams):.1f} fps, p50 {cams[0].latency_ms(50):.1f} ms, "
                                     f"drops {sum(c.drops for c in cams)}", refresh=False)

    def close(self) -> None:
        self.bar.close()
