"""``edgefold build``: fold, prepare the precision on the CPU and prove it in onnxruntime, then build.

Artifacts next to NAME.engine: NAME.prepared.onnx (exactly what TensorRT parses), NAME.json (sidecar),
NAME.trtexec.sh (the equivalent trtexec command for the target TensorRT). ``--no-engine`` writes all of
them but the engine - what a user on a laptop does before copying the files to the Jetson.

The steps, each a module: ``prepare`` (fold, frames, fp32 reference), ``strategies`` (each precision's
candidates), ``choose`` (the floor, the mixed-precision search), ``reuse`` (the calibration cache),
``engine`` (the TensorRT target, engine makers), ``ship`` (the engine measured), ``sidecar`` and
``targets`` (what is written), ``summary`` (what is said).
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from edgefold.backends import trt as trt_backend
from edgefold.core.contract import Sidecar
from edgefold.core.jsonable import plain
from edgefold.deploy import engine, reuse, sidecar, targets
from edgefold.deploy.choose import choose
from edgefold.deploy.engine import EngineMaker
from edgefold.deploy.prepare import prepare
from edgefold.deploy.ship import ship
from edgefold.deploy.spec import BuildOptions, int8_rest_in_half, plan_engine
from edgefold.deploy.summary import BuildResult
from edgefold.graph.outputs import RunOutputs


def build(model_path: str, options: BuildOptions, maker: EngineMaker | None = None) -> BuildResult:
    """prepare (fold, frames, fp32 reference) -> choose (the precision's strategies, the floor) -> ship (the
    engine built by ``maker`` and measured, the search continued on it if it misses the floor) -> the sidecar,
    trtexec script and deployment files -> every output written together. ``maker`` builds and runs engines
    (``edgefold.runtime.makers``); None: no TensorRT here, so only ``--no-engine`` builds."""
    target = engine.tensorrt_target(options, maker)
    stem = options.stem
    prepared_path, sidecar_path, script_path = f"{stem}.prepared.onnx", f"{stem}.json", f"{stem}.trtexec.sh"
    outputs = _claim(model_path, options, prepared_path, sidecar_path, script_path)
    target_paths = targets.claim(outputs, options)

    prep = prepare(model_path, options)
    key = reuse.cache_key(model_path, options, prep.calib)
    chosen, candidates, reused = choose(prep, options, key, int8_rest_in_half(options, target))

    plan = plan_engine(options, Path(prepared_path).name, Path(options.output).name, target)
    shipped = ship(prep, options, plan, chosen, sidecar.sidecar(model_path, options, chosen, plan, prep), maker,
                   tensorrt_here=maker is not None or trt_backend.installed_major() is not None)
    chosen = shipped.chosen
    side = sidecar.sidecar(model_path, options, chosen, plan, prep, shipped, maker)
    side["cache_key"] = key
    side["reused_calibration"] = reused
    target_files = targets.files(options, side, target_paths, shipped.engine, prep.fp32)
    Sidecar.from_json(side, sidecar_path)  # what every reader takes it as: a broken sidecar is never written

    files = [prepared_path, sidecar_path, script_path]
    with outputs:
        if shipped.engine is not None:
            outputs.stage_bytes(options.output, shipped.engine)
            files.insert(0, options.output)
        outputs.stage_model(prepared_path, chosen.model)
        outputs.stage_text(sidecar_path, json.dumps(side, indent=2, default=plain))
        outputs.stage_text(script_path, plan.trtexec_script() + sidecar.script_notes(side))
        if options.report and prep.fold_report is not None:
            outputs.stage_text(options.report, prep.fold_report.dumps())
            files.append(options.report)
        for path, content in target_files:
            if isinstance(content, onnx.ModelProto):
                outputs.stage_model(path, content)
            else:
                outputs.stage_bytes(path, content)
            files.append(path)
    Path(script_path).chmod(0o755)
    return BuildResult(plan, chosen, tuple(c for c in candidates if c is not chosen), side,
                       shipped, tuple(files), prep.fold_report.to_text() if prep.fold_report is not None else "")


def _claim(model_path: str, options: BuildOptions, *companions: str) -> RunOutputs:
    """Every file the build writes, claimed before any work (a clash is refused before minutes of calibration)."""
    outputs = RunOutputs(make_folders=True)  # a missing engines/ folder is created, as trtexec does
    outputs.protect_model(model_path)
    outputs.protect(options.calib, "a calibration frame")
    if options.engine:
        outputs.claim(options.output, "-o")
    prepared_path, sidecar_path, script_path = companions
    outputs.claim_model(prepared_path, "-o (NAME.prepared.onnx)")
    outputs.claim(sidecar_path, "-o (NAME.json)")
    outputs.claim(script_path, "-o (NAME.trtexec.sh)")
    outputs.claim(options.report, "--report")
    return outputs
