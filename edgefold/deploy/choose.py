"""Step 3 of a build: choose the candidate that meets the floor - the best measured one, or for INT8 the
mixed-precision search that keeps the fewest most sensitive layers in float - or refuse in one line."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx

from edgefold.compare.tolerance import Tolerance
from edgefold.deploy import reuse, strategies
from edgefold.deploy.candidate import Candidate, figures
from edgefold.deploy.prepare import Prepared
from edgefold.deploy.spec import BuildOptions
from edgefold.errors import VerificationFailed
from edgefold.precision import accuracy

SENSITIVITY_FRAMES = 3  # calibration frames the per-layer sensitivity is measured on


def choose(prep: Prepared, options: BuildOptions, key: str, half: bool = False
           ) -> tuple[Candidate, list[Candidate], bool]:
    """(chosen, every candidate, whether the previous build's calibrated model was reused). ``half``: the
    layers the INT8 search keeps out of INT8 are written (and measured) in float16."""
    cached = reuse.cached_prepared(options, key)
    if cached is not None:
        candidates = [reuse.reused(options, prep.evaluate, cached)]
    else:
        candidates = strategies.candidates(prep, options)
    chosen = max(candidates, key=lambda c: (c.passed, accuracy.score(c.on_held_out or c.on_calibration)))
    if options.precision == "int8" and not chosen.passed and cached is None and options.mixed_precision:
        chosen = _mixed_precision(chosen, prep, options, half)
    if not chosen.passed and not options.accept_accuracy_drop:
        raise VerificationFailed(below_floor(options, prep.tol, chosen))
    return chosen, candidates, cached is not None


def _mixed_precision(chosen: Candidate, prep: Prepared, options: BuildOptions, half: bool) -> Candidate:
    """Keep the fewest most sensitive layers in float so the floor holds (precision/mixed.py)."""
    from edgefold.precision import mixed

    deadline = time.monotonic() + options.search_budget_s
    ranking = rank(chosen.model, prep, options, deadline)
    found: dict[int, Candidate] = {}

    def passes(model: onnx.ModelProto) -> bool:
        c = dataclasses.replace(prep.evaluate(chosen.strategy, model), calib_method=chosen.calib_method)
        found[id(model)] = c
        return c.passed

    model, info = mixed.search(chosen.model, ranking, passes, deadline, options.show_progress, half)
    return dataclasses.replace(chosen if model is None else found[id(model)], search=info)


def rank(model: onnx.ModelProto, prep: Prepared, options: BuildOptions, deadline: float) -> list[tuple[str, float]]:
    """The quantised layers, most sensitive first, measured in onnxruntime on a few calibration frames."""
    from edgefold.backends.ort import session
    from edgefold.precision import mixed

    probe = list(prep.calib.frames)[:SENSITIVITY_FRAMES]
    feed = prep.feed

    def run(m: onnx.ModelProto) -> list[list[np.ndarray]]:
        s = session(m, optimize=True)
        names = [o.name for o in s.get_outputs()]
        return [s.run(names, {feed.name: feed.tensor(f)}) for f in probe]

    return mixed.rank_layers(model, run, prep.ref_calib[1][: len(probe)], deadline, options.show_progress)


def below_floor(options: BuildOptions, tol: Tolerance, chosen: Candidate) -> str:
    """One line: the floor, the best figure reached and what to try next."""
    failing = [s for s in chosen.on_calibration + chosen.on_held_out if not s.passed]
    worst = failing[0] if failing else (chosen.on_calibration + chosen.on_held_out)[0]
    search = chosen.search
    kept = "" if search is None else (
        f" with {len(search.kept_float)} layers in FP16" if search.kept_float else
        f" with INT8 everywhere; the FP16-layer search tried {', '.join(str(k) for k, _ in search.steps) or 'nothing'}"
        f" of {len(search.ranking)} layers in FP16{' before --search-budget ran out' if search.exhausted else ''}")
    hint = ("more calibration frames like the camera's, a lower --accuracy-floor, --search-budget, --fp16, or "
            "--accept-accuracy-drop") if options.precision == "int8" else "--fp32, or --accept-accuracy-drop"
    return (f"{options.precision} model below the accuracy floor ({tol.describe()}): best reached ({chosen.label}"
            f"{kept}): output '{worst.name}' {figures(worst)} - {worst.decided_by}; nothing written - try {hint}")
