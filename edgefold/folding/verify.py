"""Self-check of a fold in onnxruntime (CPU, graph optimisations off): the folded model fed raw frames must
equal the original fed the same frames as it expects them, on frames that exercise borders and extremes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from edgefold import verdict
from edgefold.backends.ort import session
from edgefold.core.affine import ChannelAffine
from edgefold.core.frames import InputFeed, synthetic_frames
from edgefold.core.metrics import OutputStats, output_stats
from edgefold.errors import UnsupportedGraph, VerificationFailed
from edgefold.folding.plan import ChainPlan


@dataclass(frozen=True)
class Verification:
    frames: int
    sizes: tuple[tuple[int, int], ...]
    outputs: tuple[OutputStats, ...]
    passed: bool
    tolerance: str
    bounds: tuple[float, ...] = ()  # the fixed bound per output

    def to_json(self) -> dict:
        return {"frames": self.frames, "sizes": [list(s) for s in self.sizes], "passed": self.passed,
                "tolerance": self.tolerance, "noise_floor_k": verdict.K, "bounds": list(self.bounds),
                "outputs": [o.to_json() for o in self.outputs]}

    @property
    def worst(self) -> OutputStats:
        """The output closest to failing (or failing worst): its largest error against what the frame allows."""
        return self.outputs[self._worst_index()]

    def _worst_index(self) -> int:
        bounds = self.bounds or (0.0,) * len(self.outputs)
        return max(range(len(self.outputs)), key=lambda k: verdict.ratio(self.outputs[k], bounds[k]))

    def worst_text(self) -> str:
        """``output 'y': max abs error 5.4e-07 (3.1e-07 of max |output|); on the frame closest to its limit, error
        ... of max |output|; the original itself moves ... under +-1 ulp of input noise``"""
        k = self._worst_index()
        o = self.outputs[k]
        where = "" if o.border_max is None else f", border ring {o.border_max:.3g}, interior {o.interior_max:.3g}"
        text = (f"output '{o.name}' (closest to its limit): max abs error {o.max_abs:.3g} "
                f"({o.max_rel:.2g} of max |output|){where}")
        if o.frame_floor:
            text += f"; on the frame closest to its limit, {verdict.figures(o, self.bounds[k] if self.bounds else 0.0)}"
        return text


def chain_feeds(chain: ChainPlan) -> tuple[InputFeed, InputFeed]:
    """(original input, folded input) fed from one raw frame."""
    c = chain.contract
    original = InputFeed(chain.input_name, chain.original_dtype, chain.original_shape, c.channel_axis,
                         chain.input_affine)
    folded = InputFeed(c.name, c.dtype, c.shape, c.channel_axis, ChannelAffine.identity(c.channels))
    return original, folded


MAX_VERIFY_PIXELS = 1 << 26  # 8192 x 8192: beyond that a self-check frame would not fit comfortably


def frame_sizes(chain: ChainPlan, fallback: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    axis = chain.contract.channel_axis
    spatial = [d for i, d in enumerate(chain.contract.shape) if i not in (0, axis)]
    if all(isinstance(d, int) for d in spatial):
        if spatial[0] < 1 or spatial[1] < 1 or spatial[0] * spatial[1] > MAX_VERIFY_PIXELS:
            raise UnsupportedGraph(f"input '{chain.input_name}' is {spatial[0]}x{spatial[1]}: not a size the self-check "
                                   f"can run; pass --no-verify (and check with `edgefold compare` on the device)")
        return (tuple(spatial),)  # type: ignore[return-value]
    return tuple((spatial[0] if isinstance(spatial[0], int) else h, spatial[1] if isinstance(spatial[1], int) else w)
                 for h, w in fallback)


def compare_outputs(names: list[str], ref: list[list[np.ndarray]], got: list[list[np.ndarray]],
                    rtol: float, atol: float, floors: list[list[float]] | None = None, channels_last: bool = False
                    ) -> tuple[list[OutputStats], list[float]]:
    """Per output: statistics with the verdict (against the fixed bound and the original's own noise floor on
    each frame), and the fixed bound."""
    out, bounds = [], []
    for k, name in enumerate(names):
        stats = output_stats(name, [r[k] for r in ref], [g[k] for g in got],
                             floors=[f[k] for f in floors] if floors else None, channels_last=channels_last)
        bound = atol + rtol * stats.reference_max
        text, ok = verdict.check(stats, bound)
        out.append(stats.with_verdict(ok, text))
        bounds.append(bound)
    return out, bounds


# odd sizes catch stride/padding corner cases; FPN-style models need multiples of 32
AUTO_SIZES = (((67, 93), (128, 160)), ((96, 128), (160, 224)))


@dataclass
class Reference:
    """The original model's outputs on the self-check frames, and the feeds the folded model gets for them.
    Computed before the fold is applied, so the original's session is gone before the folded one exists."""

    sizes: tuple[tuple[int, int], ...]
    names: list[str]
    outputs: list[list[np.ndarray]]
    folded_feeds: list[dict[str, np.ndarray]]
    original_feeds: list[dict[str, np.ndarray]]
    probe: verdict.NoiseProbe  # closed; reopened to measure the original's noise floor where the bound fails
    folder: object  # the TemporaryDirectory holding the probe's model file, removed with the reference
    channels_last: bool = False  # an NHWC model: its 4-D outputs are NHWC (border ring and map on H x W)


def run_reference(original: onnx.ModelProto, chains: tuple[ChainPlan, ...],
                  sizes: tuple[tuple[int, int], ...] | None) -> Reference:
    failure: BaseException | None = None
    for candidate in (sizes,) if sizes else AUTO_SIZES:
        try:
            return _reference(original, chains, candidate)
        except _OriginalFailed as err:
            failure = err.__cause__
            if err.at_load:
                raise UnsupportedGraph(f"onnxruntime cannot load the original model "
                                       f"({str(failure).strip().splitlines()[0][:160]}), so the fold cannot be "
                                       f"verified; fix the model, or pass --no-verify") from None
    raise UnsupportedGraph(f"cannot verify the fold: onnxruntime cannot run the original model "
                           f"({str(failure).splitlines()[0][:160]}); choose frame sizes it accepts with "
                           f"--verify-size HxW, or pass --no-verify")


def check_folded(folded: onnx.ModelProto, reference: Reference, rtol: float, atol: float) -> Verification:
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

    try:
        s_fold = session(folded)
        got = [s_fold.run(reference.names, feed, _quiet()) for feed in reference.folded_feeds]
    except (Fail, InvalidArgument, RuntimeException) as err:
        raise VerificationFailed(f"the folded model does not run in onnxruntime ({str(err).splitlines()[0][:200]}); "
                                 f"nothing written - please report this model") from None
    del s_fold

    def floors() -> list[list[float]] | None:
        if not reference.probe.measures:
            return None
        reference.probe.reopen()
        measured = [reference.probe.run(feed, _quiet()).floors for feed in reference.original_feeds]
        reference.probe.close()
        return measured

    return judge(reference.names, reference.outputs, got, rtol, atol, floors, reference.sizes, "folded",
                 reference.channels_last)


def judge(names: list[str], ref: list[list[np.ndarray]], got: list[list[np.ndarray]], rtol: float, atol: float,
          floors: Callable[[], list[list[float]] | None], sizes: tuple[tuple[int, int], ...],
          candidate: str, channels_last: bool = False) -> Verification:
    """The fp32 verdict on ``got`` against ``ref`` (per frame, per output): within the fixed bound, or within
    ``verdict.K`` times the original's own noise floor on that frame. ``floors`` measures the floor per frame
    (None where it cannot); it is called only when a frame exceeds the fixed bound, where it can change the
    verdict, so a candidate within the bound costs no extra run of the original."""
    errors, bounds = compare_outputs(names, ref, got, rtol, atol, channels_last=channels_last)
    if not all(e.passed for e in errors):
        measured = floors()
        if measured is not None:
            errors, bounds = compare_outputs(names, ref, got, rtol, atol, measured, channels_last)
    return Verification(len(got), sizes, tuple(errors), all(e.passed for e in errors),
                        verdict.describe(f"max |{candidate} - original| <= {atol:g} + {rtol:g} * max |original| per "
                                         f"output"), tuple(bounds))


class _OriginalFailed(Exception):
    def __init__(self, at_load: bool = False) -> None:
        super().__init__()
        self.at_load = at_load


def _quiet():
    import onnxruntime as ort

    ro = ort.RunOptions()
    ro.log_severity_level = 4  # failures become exceptions with their message; no log spam on stderr
    return ro


def _reference(original: onnx.ModelProto, chains: tuple[ChainPlan, ...],
               fallback_sizes: tuple[tuple[int, int], ...]) -> Reference:
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="edgefold-verify-")
    try:  # the original, written once with what measures its own float32 noise floor, for a later check
        probe = verdict.NoiseProbe(original, [o.name for o in original.graph.output], folder=folder.name)
    except Exception as err:
        raise _OriginalFailed(at_load=True) from err
    s_orig = probe.session
    other = _other_inputs(s_orig, chains, {noise for noise, _ in probe.noise})
    sizes = frame_sizes(chains[0], fallback_sizes)
    names = probe.names
    ref, feeds, originals = [], [], []
    for size in sizes:
        per_chain = [synthetic_frames(size[0], size[1], c.contract.channels, c.contract.pixel_range[1], seed=i)
                     for i, c in enumerate(chains)]
        for f in range(len(per_chain[0])):
            feed_o = dict(other)
            feed_f = dict(other)
            for chain, frames in zip(chains, per_chain):
                feed_original, feed_folded = chain_feeds(chain)
                feed_o[feed_original.name] = feed_original.tensor(frames[f])
                feed_f[feed_folded.name] = feed_folded.tensor(frames[f])
            try:
                ref.append(probe.outputs(feed_o, _quiet()))
            except Exception as err:
                raise _OriginalFailed() from err
            originals.append(feed_o)
            feeds.append(feed_f)
    for k, name in enumerate(names):
        if any(np.issubdtype(r[k].dtype, np.floating) and not np.all(np.isfinite(r[k])) for r in ref):
            raise UnsupportedGraph(f"the original model gives NaN or inf in output '{name}' on the self-check "
                                   f"frames, so the fold cannot be verified; fix its weights, or pass --no-verify")
    probe.close()
    channels_last = any(c.contract.layout == "NHWC" for c in chains)
    return Reference(tuple(sizes), names, ref, feeds, originals, probe, folder, channels_last)


def _other_inputs(sess, chains: tuple[ChainPlan, ...], probes: set[str]) -> dict[str, np.ndarray]:
    """Deterministic feeds for inputs that are not folded (e.g. a second, non-image input)."""
    folded = {c.input_name for c in chains} | probes
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
