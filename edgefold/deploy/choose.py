"""Step 3 of a build: choose the candidate that meets the floor - the best measured one, or for INT8 the
mixed-precision search that keeps the fewest most sensitive layers in float - or refuse in one line."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx

from edgefold.compare.tolerance import Tolerance
from edgefold.core import metrics
from edgefold.deploy import reuse, strategies
from edgefold.deploy.candidate import Candidate
from edgefold.deploy.prepare import Prepared
from edgefold.deploy.spec import BuildOptions, kept_precision
from edgefold.errors import VerificationFailed
from edgefold.precision import accuracy

SENSITIVITY_FRAMES = 3  # calibration frames the per-layer sensitivity is measured on
CLASSIFIER_FRAMES = 16  # a classifier's: those with the smallest top-1 margins (its frames are small)


def choose(prep: Prepared, options: BuildOptions, key: str, half: bool = False
           ) -> tuple[Candidate, list[Candidate], bool]:
    """(chosen, every candidate, whether the previous build's calibrated model was reused). ``half``: an INT8
    model's unquantised rest, the layers the search keeps out of INT8 among it, is written (and measured) in
    float16."""
    cached = reuse.cached_prepared(options, key)
    if cached is not None:
        candidates = [reuse.reused(options, prep.evaluate, cached)]
    else:
        candidates = strategies.candidates(prep, options, half)
    chosen = max(candidates, key=preference)
    best = chosen
    if options.precision == "int8" and not chosen.passed and cached is None and options.mixed_precision:
        chosen, best = _mixed_precision(chosen, prep, options)
    if not chosen.passed and not options.accept_accuracy_drop:
        raise VerificationFailed(below_floor(options, prep.tol, chosen, best))
    return chosen, candidates, cached is not None


def preference(c: Candidate) -> tuple:
    """Which candidate a build keeps: one that meets the floor first; among those, the most INT8 MACs (what
    INT8 is for); then the higher score - the mean over outputs of the task figures on the held-out frames
    (top-1 agreement, map IoU, 1 - 10 x false-positive rate; cosine, else 1 - max rel error, for outputs
    without a task figure)."""
    return (c.passed, (c.int8_share or 0.0) if c.passed else 0.0, score(c))


def score(c: Candidate) -> float:
    return accuracy.score(c.on_held_out or c.on_calibration)


def _mixed_precision(chosen: Candidate, prep: Prepared, options: BuildOptions) -> tuple[Candidate, Candidate]:
    """Keep the fewest most sensitive layers in float so the floor holds (precision/mixed.py). (the candidate,
    the best one the search measured: the candidate itself, or where none met the floor its best try)."""
    from edgefold.precision import mixed
    from edgefold.precision.mixed import quantized_layers

    deadline = time.monotonic() + options.search_budget_s
    ranking = rank(chosen.model, prep, options, deadline)
    found: dict[int, Candidate] = {}

    def passes(model: onnx.ModelProto) -> bool:
        c = dataclasses.replace(prep.evaluate(chosen.strategy, model), calib_method=chosen.calib_method)
        found[id(model)] = c
        return c.passed

    model, info = mixed.search(chosen.model, ranking, passes, deadline, options.show_progress)
    if model is not None:
        done = dataclasses.replace(found[id(model)], search=info)
        return done, done
    tries = {len(quantized_layers(chosen.model)) - len(quantized_layers(c.model)): c for c in found.values()}
    k, best = max(((0, chosen), *tries.items()), key=lambda t: score(t[1]))
    best = dataclasses.replace(best, search=dataclasses.replace(info, kept_float=tuple(n for n, _ in ranking[:k])))
    return dataclasses.replace(chosen, search=info), best


def rank(model: onnx.ModelProto, prep: Prepared, options: BuildOptions, deadline: float) -> list[tuple[str, float]]:
    """The quantised layers, most sensitive first, measured in onnxruntime on a few calibration frames. A
    classifier (every output classifier-shaped) is measured where the floor judges it: on the logit scale
    (``metrics.logits``), on the ``CLASSIFIER_FRAMES`` calibration frames with the smallest fp32 top-1 margin -
    those whose top-1 is at stake. (On probabilities, a confident frame's softmax hides any error: three such
    frames ranked the PP-OCR direction classifier's layers no better than graph order.)"""
    from edgefold.backends.ort import session
    from edgefold.precision import mixed

    reference = prep.ref_calib[1]
    classifier = bool(reference) and all(metrics.is_classifier(np.shape(o)) for o in reference[0])
    if classifier:
        margin = [min(float(metrics.top1_margins(o, o)[0].min()) for o in outs) for outs in reference]
        picked = [int(i) for i in np.argsort(margin, kind="stable")[:CLASSIFIER_FRAMES]]
    else:
        picked = list(range(min(SENSITIVITY_FRAMES, len(reference))))
    probe = [prep.calib.frames[i] for i in picked]
    feed = prep.feed

    def scaled(outs: list[np.ndarray], ref: list[np.ndarray]) -> list[np.ndarray]:
        return [metrics.logits(o, like=r) for o, r in zip(outs, ref)] if classifier else outs

    ref_probe = [reference[i] for i in picked]

    def run(m: onnx.ModelProto) -> list[list[np.ndarray]]:
        s = session(m, optimize=True)
        names = [o.name for o in s.get_outputs()]
        return [scaled(s.run(names, {feed.name: feed.tensor(f)}), r) for f, r in zip(probe, ref_probe)]

    return mixed.rank_layers(model, run, [scaled(r, r) for r in ref_probe], deadline, options.show_progress)


def below_floor(options: BuildOptions, tol: Tolerance, chosen: Candidate, best: Candidate | None = None) -> str:
    """One line: the floor, the comparison that failed, the best figure the search reached, what to try next."""
    best = best or chosen
    failing = [s for s in best.on_calibration + best.on_held_out if not s.passed]
    worst = failing[0] if failing else (best.on_calibration + best.on_held_out)[0]
    search = chosen.search
    kept = kept_precision(options)
    tried = "" if search is None else (
        f"; the {kept}-layer search tried {', '.join(str(k) for k, _ in search.steps) or 'nothing'} of "
        f"{len(search.ranking)} layers in {kept}{' before --search-budget ran out' if search.exhausted else ''}")
    layers = best.search.kept_float if best.search else ()
    where = (f"{best.label} with {len(layers)} layer{'s' if len(layers) != 1 else ''} in {kept}" if layers else
             f"{best.label}{' with INT8 everywhere' if options.precision == 'int8' else ''}")
    # FP16 for what INT8 leaves can be what misses (a near-tie classifier): --keep-fp32 is the next step then
    hint = ("" if options.keep_fp32 else "--keep-fp32 (what INT8 leaves runs in FP32), ") + (
        "more calibration frames like the camera's, a lower --accuracy-floor, --search-budget, --fp16, or "
        "--accept-accuracy-drop") if options.precision == "int8" else "--fp32, or --accept-accuracy-drop"
    return (f"{options.precision} model below the accuracy floor ({tol.describe()}): best reached ({where}): output "
            f"'{worst.name}' {worst.decided_by}{tried}; nothing written - try {hint}")
