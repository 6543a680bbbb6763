"""The float32 verdict: a candidate's error judged against the original's own float32 noise floor, frame by frame.

A folded (or converted) model computes the original's function in another float32 order, so the two differ by
rounding, which the rest of the network amplifies: by about 1e-7 of max |output| in a ResNet, by 1e-3 to 1e-1
on flat frames in networks with hard-swish/SiLU and squeeze-excite gates. A fixed bound alone refuses exact
folds of the latter, so every fp32 verdict (the fold's self-check, build's fp32/FP16 check, ``compare``) also
measures how far the original itself moves on each frame when the input of its first convolution(s) is
perturbed by one float32 ulp:

    floor(frame) = max over DRAWS draws of  max |f(x * (1 + d)) - f(x)|,   d = +-2^-23 per element (random signs)
    pass(frame)  <=>  error(frame) <= K * floor(frame)   or   error(frame) <= the fixed bound

``x`` is the tensor the first convolution reads - the original's normalised input, whatever preprocessing the
graph does before it. That is where a fold's rounding enters (the folded conv reads raw pixels and rounds its
products in another order), it is a float32 tensor even when the model takes uint8, and perturbing it leaves
the preprocessing's own conditioning out: a raw 0..255 input perturbed by an ulp would move the normalised
value near the mean by many of its ulps, and a uint8 input has no ulp at all. Where a model has no
convolution reachable from its input, no floor is measured (0) and the fixed bound alone decides.

K = 10 leaves room for the two float32 orders' own rounding (each about one floor), and a real error still
shows: a mean off by 0.1 of a pixel level moves the normalised input by about 1.7e-3 - four orders of
magnitude above an ulp - and a border-naive fold is wrong by O(1) on the border ring. Cost: DRAWS + 1 runs of
the original per frame (the unperturbed one through the probe's own session); the fold's self-check measures
the floor only when a frame exceeds the fixed bound, where it can change the verdict.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgefold.core.metrics import OutputStats

K = 10.0  # pass when the error is within K times the original's own floor
DRAWS = 2  # perturbed runs per frame; the floor is the largest move among them
ULP = 2.0 ** -23  # relative perturbation: one float32 ulp at 1.0
FIRST_CONVS = ("Conv", "ConvTranspose")
_PREFIX = "edgefold_ulp"


def first_conv_inputs(model: onnx.ModelProto) -> list[str]:
    """The data tensors of the convolutions the graph's inputs reach first (through no other convolution)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    reached = {i.name for i in g.input if i.name not in inits}
    found: list[str] = []
    pending = list(g.node)
    changed = True
    while changed and pending:  # node order is not trusted to be topological
        changed, rest = False, []
        for node in pending:
            if not any(i in reached for i in node.input if i):
                rest.append(node)
                continue
            changed = True
            if node.op_type in FIRST_CONVS and node.domain in ("", "ai.onnx") and node.input[0] in reached:
                if node.input[0] not in found:
                    found.append(node.input[0])
            else:
                reached.update(o for o in node.output if o)
        pending = rest
    return found


@contextmanager
def _probed(model: onnx.ModelProto, tensors: list[str]):
    """``model`` with ``noisy_k = tensor_k * noise_k`` in front of the first convs (noise_k a new float input,
    noisy_k a new output), restored on exit: no copy of a possibly large model is made."""
    g = model.graph
    taken = {i.name for i in g.input} | {o for n in g.node for o in n.output}
    stem = _PREFIX
    while any(n.startswith(stem) for n in taken):
        stem += "_"
    convs = [n for n in g.node if n.op_type in FIRST_CONVS and n.input and n.input[0] in tensors]
    rewired = [(n, n.input[0]) for n in convs]
    n_nodes, n_inputs, n_outputs = len(g.node), len(g.input), len(g.output)
    try:
        for k, t in enumerate(tensors):
            noise, noisy = f"{stem}_noise_{k}", f"{stem}_noisy_{k}"
            g.input.append(helper.make_tensor_value_info(noise, onnx.TensorProto.FLOAT, None))
            g.output.append(helper.make_tensor_value_info(noisy, onnx.TensorProto.FLOAT, None))
            g.node.append(helper.make_node("Mul", [t, noise], [noisy], name=noisy))
            for node in convs:
                if node.input[0] == t:
                    node.input[0] = noisy
        yield [(f"{stem}_noise_{k}", f"{stem}_noisy_{k}") for k in range(len(tensors))]
    finally:
        for node, name in rewired:
            node.input[0] = name
        del g.node[n_nodes:]
        del g.input[n_inputs:]
        del g.output[n_outputs:]


@dataclass
class Probe:
    """The original's outputs on a frame and its own noise floor there, per output."""

    outputs: list[np.ndarray]
    floors: list[float]


class NoiseProbe:
    """The original in onnxruntime with a +-1-ulp multiplier in front of its first convolution(s). ``run`` gives
    its unperturbed outputs (bit-identical to the original's: x * 1 is exact) and the floor of each output.
    With ``folder`` the probed model is also written there once, so ``close`` can free the session and
    ``reopen`` make it again after the original itself is gone (the fold rewrites it in place)."""

    def __init__(self, model: onnx.ModelProto, names: list[str] | None = None, *, optimize: bool = False,
                 seed: int = 0, folder: str | None = None) -> None:
        import tempfile

        from edgefold.graph.io import model_bytes_or_path
        from edgefold.graph.names import with_unique_node_names

        model = with_unique_node_names(model, fill_empty=False)  # onnxruntime refuses repeated node names
        self.names = names if names is not None else [o.name for o in model.graph.output]
        self.rng = np.random.default_rng(seed)
        self.optimize = optimize
        self.noise: list[tuple[str, str]] = []
        self.path: str | None = None
        tensors = first_conv_inputs(model)
        with tempfile.TemporaryDirectory(prefix="edgefold-probe-") as tmp:
            if tensors:
                try:
                    with _probed(model, tensors) as self.noise:
                        self._open(model_bytes_or_path(model, f"{folder or tmp}/"), folder)
                    return
                except Exception:  # noqa: BLE001 - a first conv that reads no float32 tensor: no floor, bound alone
                    self.noise = []
            self._open(model_bytes_or_path(model, f"{folder or tmp}/"), folder)

    def _open(self, payload: str | bytes, folder: str | None) -> None:
        from pathlib import Path

        from edgefold.backends.ort import session_from

        if folder is not None:
            if isinstance(payload, bytes):
                Path(folder, "probe.onnx").write_bytes(payload)
                payload = str(Path(folder, "probe.onnx"))
            self.path = payload
        self.session = session_from(payload, optimize=self.optimize)

    def close(self) -> None:
        del self.session

    def reopen(self) -> None:
        assert self.path is not None, "a NoiseProbe made without a folder cannot be reopened"
        self._open(self.path, None)

    @property
    def measures(self) -> bool:
        return bool(self.noise)

    def outputs(self, feed: dict[str, np.ndarray], run_options=None) -> list[np.ndarray]:  # noqa: ANN001
        """The original's outputs alone (no perturbed runs)."""
        ones = {noise: np.ones(1, np.float32) for noise, _ in self.noise}
        return self.session.run(self.names, {**feed, **ones}, run_options)

    def run(self, feed: dict[str, np.ndarray], run_options=None) -> Probe:  # noqa: ANN001
        ones = {noise: np.ones(1, np.float32) for noise, _ in self.noise}
        noisy = [n for _, n in self.noise]
        first = self.session.run(self.names + noisy, {**feed, **ones}, run_options)
        outputs, shapes = first[: len(self.names)], [x.shape for x in first[len(self.names):]]
        floors = [0.0] * len(outputs)
        for _ in range(DRAWS if self.noise else 0):
            draw = {noise: np.where(self.rng.random(shape) < 0.5, 1 - ULP, 1 + ULP).astype(np.float32)
                    for (noise, _), shape in zip(self.noise, shapes)}
            moved = self.session.run(self.names, {**feed, **draw}, run_options)
            floors = [max(f, _max_abs_diff(a, b)) for f, a, b in zip(floors, moved, outputs)]
        return Probe(list(outputs), floors)


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind not in "fc":
        a, b = a.astype(np.float64), b.astype(np.float64)
    d = np.abs(a - b)
    return float(d.max(initial=0.0)) if np.all(np.isfinite(d)) else float("inf")


def allowed(bound: float, floor: float) -> float:
    """The largest error a frame may have: the fixed bound, or K times the original's own floor there."""
    return max(bound, K * floor)


def _frames(s: OutputStats) -> list[tuple[float, float]]:
    errors = s.frame_max_abs or (s.max_abs,)
    floors = s.frame_floor if len(s.frame_floor) == len(errors) else (0.0,) * len(errors)
    return list(zip(errors, floors))


def _ratio(error: float, limit: float) -> float:
    if error != error:  # NaN is the worst
        return float("inf")
    return error / limit if limit > 0 else (0.0 if error == 0 else float("inf"))


def decisive_frame(s: OutputStats, bound: float) -> int:
    """The frame whose error is largest against what it is allowed (the worst failure, or the closest pass)."""
    return int(np.argmax([_ratio(e, allowed(bound, f)) for e, f in _frames(s)]))


def ratio(s: OutputStats, bound: float) -> float:
    """The decisive frame's error over what it is allowed: <= 1 passes."""
    e, f = _frames(s)[decisive_frame(s, bound)]
    return _ratio(e, allowed(bound, f))


def passes(s: OutputStats, bound: float) -> bool:
    """The verdict: every frame's error is within the fixed bound or within K times the floor on that frame."""
    return all(e <= bound or e <= K * f for e, f in _frames(s))


def figures(s: OutputStats, bound: float | None = None, who: str = "the original") -> str:
    """``error 4.8e-04 of max |output|; the original itself moves 3e-04 under +-1 ulp of input noise``, on the
    decisive frame (with ``bound``) or the frame with the largest error."""
    frames = _frames(s)
    i = decisive_frame(s, bound) if bound is not None else int(np.argmax([e for e, _ in frames]))
    e, f = frames[i]
    scale = s.reference_max or 1.0
    text = f"error {e / scale:.2g} of max |output|"
    if s.frame_floor:
        text += f"; {who} itself moves {f / scale:.2g} under +-1 ulp of input noise"
    return text


def check(s: OutputStats, bound: float) -> tuple[str, bool]:
    """(what decided, passed) for the numeric part of a verdict, naming each figure."""
    frames = _frames(s)
    i = decisive_frame(s, bound)
    e, f = frames[i]
    where = f" on frame {i + 1} of {len(frames)}" if len(frames) > 1 else ""
    floor = f"{K:g} x the original's own noise floor {f:.3g}" if s.frame_floor else ""
    if passes(s, bound):
        if all(e_ <= bound for e_, _ in frames):
            return f"max abs {s.max_abs:.3g} <= {bound:.3g}", True
        return f"max abs {e:.3g}{where} > bound {bound:.3g} but <= {floor}", True
    return f"max abs {e:.3g}{where} > bound {bound:.3g}" + (f" and > {floor}" if floor else ""), False


def describe(bound_text: str) -> str:
    """The rule, for a tolerance line."""
    return f"per frame: {bound_text}, or <= {K:g} x the original's own float32 noise floor (+-1 ulp of input)"
