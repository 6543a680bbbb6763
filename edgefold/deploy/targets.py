"""The deployment files of --deepstream and --triton: claimed before any work, written with the engine."""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from edgefold.core.contract import InputContract
from edgefold.core.jsonable import plain
from edgefold.deploy import deepstream, triton
from edgefold.deploy.spec import BuildOptions
from edgefold.graph.outputs import RunOutputs


def claim(outputs: RunOutputs, options: BuildOptions) -> dict[str, str]:
    """The deployment files of --deepstream / --triton, claimed before any work (the Triton schema is loaded
    now, so a missing tritonclient is a one-line error before the build, not after)."""
    stem = Path(options.stem)
    paths: dict[str, str] = {}
    if options.deepstream:
        paths["nvinfer"] = str(stem.parent / deepstream.config_name(str(stem)))
    if options.triton_repo:
        triton.schema()
        root = Path(options.triton_repo) / stem.name
        paths.update(triton_config=str(root / "config.pbtxt"), triton_sidecar=str(root / triton.SIDECAR))
        if options.engine:
            paths["triton_plan"] = str(root / "1" / "model.plan")
        if options.triton_onnx:
            onnx_root = Path(options.triton_repo) / f"{stem.name}_onnx"
            paths.update(onnx_config=str(onnx_root / "config.pbtxt"), onnx_sidecar=str(onnx_root / triton.SIDECAR),
                         onnx_model=str(onnx_root / "1" / "model.onnx"))
    for key, path in paths.items():
        if key == "onnx_model":
            outputs.claim_model(path, "--triton-onnx")
        else:
            outputs.claim(path, "--deepstream" if key == "nvinfer" else "--triton")
    return paths


def files(options: BuildOptions, sidecar: dict, paths: dict[str, str], engine_bytes: bytes | None,
          fp32: onnx.ModelProto) -> list[tuple[str, bytes | onnx.ModelProto]]:
    """(path, content) of every deployment file; the sidecar records what was written for which target."""
    out: list[tuple[str, bytes | onnx.ModelProto]] = []
    stem = Path(options.stem)
    if options.deepstream:
        contract = InputContract.from_json(sidecar["input_contract"])
        deepstream.check_contract(contract)
        sidecar["deepstream"] = {"config": Path(paths["nvinfer"]).name,
                                 "model-color-format": deepstream.COLOR_FORMAT[contract.channel_order],
                                 "input": "float32 raw pixels 0..255, planar NCHW (what nvinfer feeds)"}
    if options.triton_repo:
        sidecar["triton"] = {"repository": str(options.triton_repo), "model": stem.name,
                             "onnx_twin": f"{stem.name}_onnx" if options.triton_onnx else None}
    if options.deepstream:
        text = deepstream.nvinfer_config(sidecar, Path(options.output).name, Path(f"{stem}.prepared.onnx").name)
        out.append((paths["nvinfer"], text.encode()))
    if options.triton_repo:
        side_text = json.dumps(sidecar, indent=2, default=plain).encode()
        out.append((paths["triton_config"], triton.config_text(triton.model_config(sidecar, stem.name)).encode()))
        out.append((paths["triton_sidecar"], side_text))
        if engine_bytes is not None:
            out.append((paths["triton_plan"], engine_bytes))
        if options.triton_onnx:
            twin = triton.model_config(sidecar, f"{stem.name}_onnx", platform="onnxruntime_onnx")
            out.append((paths["onnx_config"], triton.config_text(twin).encode()))
            out.append((paths["onnx_sidecar"], side_text))
            out.append((paths["onnx_model"], fp32))
    return out
