"""Self-check of a fold in onnxruntime (CPU, graph optimisations off): the folded model fed raw frames must
equal the original fed the same frames as it expects them, on frames that exercise borders and extremes.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import onnx

from edgefold.errors import UnsupportedGraph, VerificationFailed
from edgefold.fold.plan import ChainPlan
from edgefold.graph.io import model_bytes_or_path


@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # max_abs / max |reference|
    border_max: float | None  # on the outer ring of spatial outputs
    interior_max: float | None
    reference_max: float
    passed: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Verification:
    frames: int
    sizes: tuple[tuple[int, int], ...]
    outputs: tuple[OutputError, ...]
    passed: bool
    tolerance: str

    def to_json(self) -> dict:
        return {"frames": self.frames, "sizes": [list(s) for s in self.sizes], "passed": self.passed,
                "tolerance": self.tolerance, "outputs": [o.to_json() for o in self.outputs]}

    @property
    def worst(self) -> OutputError:
        return max(self.outputs, key=lambda o: o.max_rel)


def test_frames(height: int, width: int, channels: int, pixel_max: float, seed: int = 0) -> list[np.ndarray]:
    """(channels, H, W) float64 frames: random over the full range, black, white, hard edges, and a
    document-like page (dark strokes on white) that makes detectors respond."""
    rng = np.random.default_rng(seed)
    integral = pixel_max >= 2
    rand = rng.integers(0, int(pixel_max) + 1, (channels, height, width)).astype(np.float64) if integral \
        else rng.random((channels, height, width))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((yy // 5) + (xx // 7)) % 2).astype(np.float64) * pixel_max
    page = np.full((height, width), pixel_max * 0.9)
    for _ in range(max(1, height * width // 400)):
        y, x = rng.integers(0, height), rng.integers(0, width)
        page[y:y + rng.integers(2, 5), x:x + rng.integers(1, 3)] = pixel_max * 0.1  # stroke
        page[y:y + 2, x:x + rng.integers(3, 12)] = pixel_max * 0.05
    frames = [rand, np.zeros_like(rand), np.full_like(rand, pixel_max), checker, page]
    if integral:  # integer pixels must survive the cast to the input's dtype unchanged
        frames = [np.round(f) for f in frames]
    return [np.broadcast_to(f, rand.shape).copy() for f in frames]


def to_layout(frame_chw: np.ndarray, rank_shape: tuple, channel_axis: int, dtype: str) -> np.ndarray:
    """A (C, H, W) frame as a batch-1 tensor with channels on ``channel_axis``."""
    batch = rank_shape[0] if isinstance(rank_shape[0], int) and rank_shape[0] > 0 else 1
    x = np.repeat(frame_chw[None], batch, axis=0)  # N C H W
    if channel_axis != 1:
        x = np.moveaxis(x, 1, channel_axis)
    return x.astype(dtype)


def reference_feed(chain: ChainPlan, frame_chw: np.ndarray) -> np.ndarray:
    """What the original input receives for a raw frame: the declared map (replication, order, norm)."""
    a, b = chain.input_affine.matrix, chain.input_affine.offset
    x = np.einsum("cj,jhw->chw", a, frame_chw) + b[:, None, None]
    return to_layout(x, chain.original_shape, chain.contract.channel_axis, chain.original_dtype)


def frame_sizes(chain: ChainPlan, fallback: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    axis = chain.contract.channel_axis
    spatial = [d for i, d in enumerate(chain.contract.shape) if i not in (0, axis)]
    if all(isinstance(d, int) for d in spatial):
        return (tuple(spatial),)  # type: ignore[return-value]
    return tuple((spatial[0] if isinstance(spatial[0], int) else h, spatial[1] if isinstance(spatial[1], int) else w)
                 for h, w in fallback)


def session(model: onnx.ModelProto, tmp: str, optimize: bool = False):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize \
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    return ort.InferenceSession(model_bytes_or_path(model, tmp), so, providers=["CPUExecutionProvider"])


def ring_width(h: int, w: int) -> int:
    return max(1, min(h, w) // 16)


def compare_outputs(names: list[str], ref: list[list[np.ndarray]], got: list[list[np.ndarray]],
                    rtol: float, atol: float) -> list[OutputError]:
    errors = []
    for k, name in enumerate(names):
        max_abs = ref_max = 0.0
        border_max: float | None = None
        interior_max: float | None = None
        for r_list, g_list in zip(ref, got):
            r = np.asarray(r_list[k], dtype=np.float64)
            gv = np.asarray(g_list[k], dtype=np.float64)
            if r.shape != gv.shape:
                return [OutputError(name, float("inf"), float("inf"), None, None, 0.0, False)]
            d = np.abs(r - gv)
            max_abs = max(max_abs, float(d.max(initial=0.0)))
            ref_max = max(ref_max, float(np.abs(r).max(initial=0.0)))
            if d.ndim == 4 and min(d.shape[2:]) >= 4:
                w = ring_width(*d.shape[2:])
                inner = d[:, :, w:-w, w:-w]
                mask = np.ones(d.shape[2:], bool)
                mask[w:-w, w:-w] = False
                border_max = max(border_max or 0.0, float(d[:, :, mask].max(initial=0.0)))
                interior_max = max(interior_max or 0.0, float(inner.max(initial=0.0)))
        passed = bool(max_abs <= atol + rtol * ref_max and np.isfinite(max_abs))
        errors.append(OutputError(name, max_abs, max_abs / ref_max if ref_max else max_abs, border_max,
                                  interior_max, ref_max, passed))
    return errors


# odd sizes catch stride/padding corner cases; FPN-style models need multiples of 32
AUTO_SIZES = (((67, 93), (128, 160)), ((96, 128), (160, 224)))


def verify_fold(original: onnx.ModelProto, folded: onnx.ModelProto, chains: tuple[ChainPlan, ...],
                sizes: tuple[tuple[int, int], ...] | None, rtol: float, atol: float) -> Verification:
    """Run both models on the same raw frames; every folded input gets frames of its own contract."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

    failure: BaseException | None = None
    for candidate in (sizes,) if sizes else AUTO_SIZES:
        try:
            return _verify(original, folded, chains, candidate, rtol, atol)
        except _OriginalFailed as err:
            failure = err.__cause__
        except (Fail, InvalidArgument, RuntimeException) as err:
            raise VerificationFailed(f"the folded model does not run in onnxruntime ({str(err).splitlines()[0][:200]}); "
                                     f"nothing written - please report this model") from None
    raise UnsupportedGraph(f"cannot verify the fold: onnxruntime cannot run the original model "
                           f"({str(failure).splitlines()[0][:160]}); choose frame sizes it accepts with "
                           f"--verify-size HxW, or pass --no-verify")


class _OriginalFailed(Exception):
    pass


def _quiet():
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = 4  # failures become exceptions with their message; no log spam on stderr
    return ro


def _verify(original: onnx.ModelProto, folded: onnx.ModelProto, chains: tuple[ChainPlan, ...],
            fallback_sizes: tuple[tuple[int, int], ...], rtol: float, atol: float) -> Verification:
    with tempfile.TemporaryDirectory(prefix="edgefold-verify-") as tmp:
        try:
            s_orig = session(original, tmp + "/")
        except Exception as err:
            raise _OriginalFailed() from err
        with tempfile.TemporaryDirectory(prefix="edgefold-verify-") as tmp2:
            s_fold = session(folded, tmp2 + "/")
            other = _other_inputs(s_orig, chains)
            sizes = frame_sizes(chains[0], fallback_sizes)
            names = [o.name for o in s_orig.get_outputs()]
            ref, got = [], []
            for size in sizes:
                per_chain = [test_frames(size[0], size[1], c.contract.channels, c.contract.pixel_range[1], seed=i)
                             for i, c in enumerate(chains)]
                for f in range(len(per_chain[0])):
                    feed_o = dict(other)
                    feed_f = dict(other)
                    for chain, frames in zip(chains, per_chain):
                        frame = frames[f]
                        feed_o[chain.input_name] = reference_feed(chain, frame)
                        feed_f[chain.contract.name] = to_layout(frame, chain.contract.shape,
                                                                chain.contract.channel_axis, chain.contract.dtype)
                    try:
                        ref.append(s_orig.run(names, feed_o, _quiet()))
                    except Exception as err:
                        raise _OriginalFailed() from err
                    got.append(s_fold.run(names, feed_f, _quiet()))
    errors = compare_outputs(names, ref, got, rtol, atol)
    return Verification(len(ref), tuple(sizes), tuple(errors), all(e.passed for e in errors),
                        f"max |folded - original| <= {atol:g} + {rtol:g} * max |original| per output")


def _other_inputs(sess, chains: tuple[ChainPlan, ...]) -> dict[str, np.ndarray]:
    """Deterministic feeds for inputs that are not folded (e.g. a second, non-image input)."""
    folded = {c.input_name for c in chains}
    rng = np.random.default_rng(1)
    feeds: dict[str, np.ndarray] = {}
    type_map = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
                "tensor(float16)": np.float16}
    for i in sess.get_inputs():
        if i.name in folded:
            continue
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.random(shape).astype(type_map.get(i.type, np.float32))
    return feeds
