"""DeepStream: the ``nvinfer`` configuration for an engine ``edgefold build --deepstream`` made.

``nvinfer`` computes ``y = net-scale-factor * (x - offsets[c])`` on 0..255 pixels and hands the engine float32
planar data (RGB, BGR or GRAY by ``model-color-format``). One scalar scale cannot express a per-channel std, so
edgefold's engine for DeepStream takes the raw float32 pixels and the fold does all of the normalisation,
exactly: ``net-scale-factor=1.0``, ``offsets=0``. Everything here is derived from the build's sidecar.
"""
from __future__ import annotations

import configparser
from pathlib import Path

from edgefold.core.contract import InputContract, Sidecar
from edgefold.errors import UsageError

# model-color-format: 0 RGB, 1 BGR, 2 GRAY (nvinfer); edgefold's "rgb" is the model's own channel order, taken
# as RGB (the ImageNet convention); "bgr" means the engine wants the reversed order
COLOR_FORMAT = {"rgb": 0, "as-original": 0, "bgr": 1, "gray": 2}
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode
NETWORK_TYPE_OTHER = 100  # raw tensors out (output-tensor-meta=1); set 0/1/2 and a parser for detectors etc.


def check_contract(contract: InputContract) -> None:
    """What nvinfer can feed: float32, planar NCHW, 1 or 3 channels."""
    if contract.layout != "NCHW":
        raise UsageError(f"--deepstream: input '{contract.name}' is {contract.layout}; nvinfer feeds planar NCHW "
                         f"tensors (and checks the channel count on axis 1), so export the model with an NCHW input")
    if contract.dtype != "float32":
        raise UsageError(f"--deepstream: input '{contract.name}' is {contract.dtype}; nvinfer feeds float32 - drop "
                         f"--input-dtype (--deepstream makes the engine take float32 raw pixels)")
    if contract.channels not in (1, 3) or contract.channel_order not in COLOR_FORMAT:
        raise UsageError(f"--deepstream: input '{contract.name}' has {contract.channels} channels "
                         f"({contract.channel_order}); nvinfer feeds RGB, BGR or GRAY")


def nvinfer_config(sidecar: dict, engine_file: str, onnx_file: str) -> str:
    """The ``[property]`` group for ``nvinfer`` (``config-file-path=NAME.nvinfer.txt``)."""
    info = Sidecar.from_json(sidecar)
    contract = info.contract
    check_contract(contract)
    h_w = _hw(info)
    batch = info.max_batch or 1
    channels = contract.channels
    outputs = [o["name"] for o in info.outputs]
    props = [
        ("gpu-id", "0"),
        ("gie-unique-id", "1"),
        ("process-mode", "1"),
        ("network-type", str(NETWORK_TYPE_OTHER)),
        ("output-tensor-meta", "1"),
        ("onnx-file", onnx_file),
        ("model-engine-file", engine_file),
        ("network-mode", str(NETWORK_MODE[info.precision])),
        ("batch-size", str(batch)),
        ("infer-dims", f"{channels};{h_w[0]};{h_w[1]}"),
        ("network-input-order", "0"),
        ("model-color-format", str(COLOR_FORMAT[contract.channel_order])),
        ("net-scale-factor", "1.0"),
        ("offsets", ";".join(["0"] * channels)),
        ("maintain-aspect-ratio", "0"),
        ("output-blob-names", ";".join(outputs)),
    ]
    head = ("# nvinfer config written by edgefold build --deepstream. The engine takes raw pixels (0..255, float32,\n"
            "# planar): its first convolution normalises them exactly, so nvinfer must not scale or offset them\n"
            "# (net-scale-factor=1.0, offsets=0). network-type=100 hands out raw tensors; set a parser for detectors.\n")
    return head + "[property]\n" + "".join(f"{k}={v}\n" for k, v in props)


def parse_nvinfer(text: str) -> dict[str, str]:
    """The ``[property]`` group of an nvinfer config, as nvinfer's key file parser reads it."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as err:
        raise UsageError(f"not an nvinfer config ({str(err).splitlines()[0]})") from None
    if "property" not in parser:
        raise UsageError("not an nvinfer config (no [property] group)")
    return dict(parser["property"])


def _hw(info: Sidecar) -> tuple[int, int]:
    contract = info.contract
    size = contract.static_size()
    if size is not None:
        return size
    p = info.profile(contract.name)
    if p is not None:
        return int(p["opt"][2]), int(p["opt"][3])
    raise UsageError(f"--deepstream: input '{contract.name}' has a dynamic size and no --shapes profile; nvinfer "
                     f"needs infer-dims")


def config_name(stem: str) -> str:
    return f"{Path(stem).name}.nvinfer.txt"
