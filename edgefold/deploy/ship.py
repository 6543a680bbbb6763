"""Step 5 of a build: the engine that ships, measured. With an engine maker (TensorRT), the engine is built,
the held-out frames run through it, and the same floor is applied against the fp32 reference. An INT8 engine
that misses a floor its onnxruntime simulation met (TensorRT fuses, reorders and picks kernels the simulation
does not) continues the mixed-precision search with the engine in the loop: rebuilt with the next most
sensitive layers kept in float, within what is left of --search-budget. The timing cache (the user's, else a
private one for this build) makes each rebuild cheaper than the first build."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgefold.core.metrics import OutputStats
from edgefold.deploy.candidate import Candidate, figures
from edgefold.deploy.choose import rank
from edgefold.deploy.engine import EngineMaker, build_engine, workdir
from edgefold.deploy.prepare import Prepared
from edgefold.deploy.spec import BuildOptions, EnginePlan
from edgefold.errors import VerificationFailed
from edgefold.precision import accuracy
from edgefold.precision.mixed import SearchResult


@dataclass(frozen=True)
class Rebuild:
    float_layers: int  # layers kept in float in this engine
    seconds: float
    stats: tuple[OutputStats, ...]  # the held-out frames through it

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.stats)

    def to_json(self) -> dict:
        return {"float_layers": self.float_layers, "seconds": round(self.seconds, 1), "passed": self.passed}


@dataclass(frozen=True)
class Shipped:
    chosen: Candidate  # the prepared model the engine was built from (measured again on the CPU if it changed)
    engine: bytes | None
    measured_on: str  # what the verdict's held-out figures come from
    on_engine: tuple[OutputStats, ...]  # the held-out frames through the engine; () without one
    builds: tuple[Rebuild, ...]  # every engine build, the first included

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.on_engine) if self.engine is not None else self.chosen.passed


def simulation(options: BuildOptions, tensorrt_here: bool) -> str:
    """What the accuracy is measured on when no engine is built here."""
    what = {"int8": "Q/DQ simulation", "fp32": "fp32 ONNX"}.get(options.precision, "FP16 ONNX")
    if options.precision == "fp16" and options.fp16_flag:
        what = "fp32 ONNX (FP16 is the builder flag's)"
    return f"onnxruntime {what} ({'--no-engine' if tensorrt_here else 'no TensorRT here'})"


def ship(prep: Prepared, options: BuildOptions, plan: EnginePlan, chosen: Candidate, sidecar: dict,
         maker: EngineMaker | None, tensorrt_here: bool) -> Shipped:
    if not options.engine or maker is None:
        return Shipped(chosen, None, simulation(options, tensorrt_here), (), ())
    t_start = time.monotonic()
    with workdir() as tmp:
        if plan.timing_cache is None:  # a private cache: rebuilds reuse the first build's tactic timings
            plan = dataclasses.replace(plan, timing_cache=str(Path(tmp) / "timing.cache"))
        builds: list[Rebuild] = []
        found: dict[int, tuple[bytes, tuple[OutputStats, ...]]] = {}

        def attempt(model: onnx.ModelProto, float_layers: int) -> bool:
            data, seconds = build_engine(maker, plan, model, tmp, options.output)
            stats = _measure(maker, data, sidecar, prep)
            builds.append(Rebuild(float_layers, seconds, stats))
            found[id(model)] = (data, stats)
            return builds[-1].passed

        kept = chosen.search.kept_float if chosen.search else ()
        if attempt(chosen.model, len(kept)) or not _search_on_engine(options, chosen):
            data, stats = found[id(chosen.model)]
            shipped = Shipped(chosen, data, maker.describe(), stats, tuple(builds))
        else:
            shipped = _continue_search(prep, options, chosen, kept, attempt, found, t_start, maker, builds)
    if not shipped.passed and not options.accept_accuracy_drop:
        raise VerificationFailed(engine_below_floor(options, prep, shipped))
    return shipped


def _search_on_engine(options: BuildOptions, chosen: Candidate) -> bool:
    return options.precision == "int8" and options.mixed_precision and chosen.passed


def _continue_search(prep: Prepared, options: BuildOptions, chosen: Candidate, kept: tuple[str, ...], attempt,  # noqa: ANN001
                     found: dict, t_start: float, maker: EngineMaker, builds: list[Rebuild]) -> Shipped:
    from edgefold.precision import mixed

    spent = chosen.search.seconds if chosen.search else 0.0
    deadline = t_start + max(0.0, options.search_budget_s - spent)
    ranking = list(chosen.search.ranking) if chosen.search and chosen.search.ranking else \
        rank(chosen.model, prep, options, deadline)
    rest = [(n, v) for n, v in ranking if n not in kept]
    model, info = mixed.search(chosen.model, rest, lambda m: attempt(m, len(kept) + _extra(m, chosen.model)),
                               deadline, options.show_progress)
    if model is None:  # the first engine ships only with --accept-accuracy-drop
        data, stats = found[id(chosen.model)]
        return Shipped(chosen, data, maker.describe(), stats, tuple(builds))
    search = SearchResult(kept + info.kept_float, tuple(ranking), chosen.search.steps if chosen.search else (),
                          spent + info.seconds, info.exhausted)
    data, stats = found[id(model)]
    again = dataclasses.replace(prep.evaluate(chosen.strategy, model), calib_method=chosen.calib_method, search=search)
    return Shipped(again, data, maker.describe(), stats, tuple(builds))


def _extra(model: onnx.ModelProto, base: onnx.ModelProto) -> int:
    """How many more layers ``model`` keeps in float than ``base``."""
    from edgefold.precision.mixed import quantized_layers

    return len(quantized_layers(base)) - len(quantized_layers(model))


def _measure(maker: EngineMaker, data: bytes, sidecar: dict, prep: Prepared) -> tuple[OutputStats, ...]:
    names = prep.ref_held[0]
    runner = maker.load(data, sidecar)
    try:
        gots = [[out[n] for n in names] for out in (runner.run(prep.feed.tensor(f)) for f in prep.held_out.frames)]
    finally:
        runner.close()
    return accuracy.judge(prep.ref_held, gots, prep.tol)


def engine_below_floor(options: BuildOptions, prep: Prepared, shipped: Shipped) -> str:
    """One line: the engine missed the floor the simulation met, the best it reached, the rebuilds tried."""
    best = max(shipped.builds, key=lambda b: (sum(s.passed for s in b.stats), accuracy.score(b.stats)))
    worst = next(s for s in best.stats if not s.passed)
    tries = ", ".join(f"{b.float_layers} in float {b.seconds:.0f} s" for b in shipped.builds)
    search = ("" if options.precision != "int8" else
              " (the mixed-precision search continued on the engine)" if len(shipped.builds) > 1 else
              " (no engine search: --no-mixed-precision)" if not options.mixed_precision else "")
    hint = (("" if options.keep_fp32 else "--keep-fp32 (what INT8 leaves runs in FP32), ") + "a larger "
            "--search-budget, more calibration frames like the camera's, --fp16, or --accept-accuracy-drop"
            if options.precision == "int8" else "--fp32, or --accept-accuracy-drop")
    return (f"{options.precision} {shipped.measured_on} below the accuracy floor ({prep.tol.describe()}) although "
            f"the onnxruntime simulation met it{search}: best reached with {best.float_layers} layers in float: "
            f"output '{worst.name}' {figures(worst)} - {worst.decided_by}; "
            f"engine builds: {tries}; nothing written - try {hint}")
