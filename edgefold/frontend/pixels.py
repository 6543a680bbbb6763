"""Camera-native pixel formats: the engine reads the camera's own buffer (Bayer, YUV, 10-16-bit Mono).

``attach`` puts a format in front of a folded model (float32 input in the 8-bit range): composed into the stem
convs where it can be (``frontend.stems``, planned in ``frontend.compose``), else a front end before the stem
(``frontend.planes``). Either way the result is exactly "convert in float, normalise, run the original model",
which ``check_front_end`` measures; ``describe`` says which form each stem got and what it costs.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from edgefold import verdict
from edgefold.core.contract import (
    InputContract,
    Meta,
    PixelFormat,
    contracts_of,
    helper_outputs,
    meta_json,
    pixel_format,
    write_meta,
)
from edgefold.errors import UsageError, VerificationFailed
from edgefold.frontend.bayer_stem import compose_bayer
from edgefold.frontend.planes import (
    DEMOSAIC_MACS_PER_PIXEL,
    YUV_MACS_PER_PIXEL,
    demosaic,
    macs_per_pixel,
    rescale,
    yuv,
)
from edgefold.frontend.stems import Composed, compose_scale, compose_yuv
from edgefold.graph.names import FreshNames, node_key

if TYPE_CHECKING:
    from edgefold.folding.verify import Verification


def describe(model: onnx.ModelProto) -> str:
    """The form the pixel-format front end of ``model`` (made by ``attach``) takes in the engine, and its cost."""
    fe = meta_json(model, Meta.FRONTEND, {})
    fmt = pixel_format(fe["format"])
    layout = "H x 2W" if fmt.chroma in ("YUYV", "UYVY") else "3H/2 x W"
    unclipped = "unclipped (OpenCV clips out-of-gamut values)"
    if fe.get("form") == "composed":
        macs = "MACs per output and channel " + ", ".join(f"'{k}' {v[0]} (RGB stem {v[1]})"
                                                          for k, v in fe["macs_per_output"].items())
        if fmt.mosaic:
            joined = ", ".join(f"'{k}' after {v}" for k, v in fe.get("joined_after", {}).items())
            return (f"Bayer mosaic composed into the stem: one conv on the mosaic (each even-stride output sees one "
                    f"colour phase per tap) away from the edges, the demosaic and the stem on thin strips along them "
                    f"(OpenCV's border rows/columns), joined by two Concats ({joined}); no RGB frame in the engine; "
                    f"{macs}")
        if fmt.chroma:
            neutral = fe.get("neutral_rgb")
            centred = (f"centred at RGB ({', '.join(f'{v:.4g}' for v in neutral)}), the colour that normalises to "
                       f"zero, so no border term" if neutral else "centred")
            return (f"{fmt.chroma} buffer ({layout} uint8) composed into the stem: a conv on Y at full resolution plus "
                    f"a conv on the chroma planes at theirs, the planes {centred}, {fe['yuv']} matrix in the weights; "
                    f"no RGB frame in the engine; {macs}; {unclipped}")
        return (f"the scale x * 255/{int(fmt.max_value)} in the gray stem's weights, which read the float32 frame "
                f"(no pass before them); {macs}")
    why = f" (not composed into the stem: {fe['not_composed']})" if fe.get("not_composed") else ""
    if fmt.mosaic:
        return (f"bilinear demosaic in the engine (SpaceToDepth, 3x3 conv 4->12 at half resolution, DepthToSpace, "
                f"border rows/columns copied as OpenCV does), {DEMOSAIC_MACS_PER_PIXEL} MACs a pixel before the "
                f"folded stem{why}")
    if fmt.chroma:
        return (f"{fmt.chroma} buffer ({layout} uint8) -> Y + chroma upsampled 2x (nearest) -> {fe['yuv']} matrix as "
                f"a 1x1 conv, {YUV_MACS_PER_PIXEL} MACs a pixel before the folded stem{why}; {unclipped}")
    return f"x * 255/{int(fmt.max_value)} on the float32 input{why}"


def attach(folded: onnx.ModelProto, fmt: PixelFormat, compose: bool | str = True) -> onnx.ModelProto:
    """The folded model (float32 input in the 8-bit pixel range) with ``fmt``'s front end before it: composed
    into the stem convs where that is exact (``frontend.stems``, ``frontend.bayer_stem``), else a front end
    before them (``frontend.planes``; ``compose`` False or a reason string forces it); the one place the graph
    changes for a pixel format. Nodes are known by their outputs (``graph.names.node_key``), never by name."""
    c = _folded_input(folded, fmt)
    shape = _buffer_shape(c, fmt)
    out = onnx.ModelProto()
    out.CopyFrom(folded)
    g = out.graph
    fresh = FreshNames(g)
    inner = fresh.name(f"{c.name}/{fmt.genicam}_pixels")
    for node in g.node:
        for i, name in enumerate(node.input):
            if name == c.name:
                node.input[i] = inner
    pos = [i.name for i in g.input].index(c.name)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(fmt.dtype))
    g.input[pos].CopyFrom(helper.make_tensor_value_info(c.name, elem, shape))
    composer = compose_yuv if fmt.chroma else (compose_bayer if fmt.mosaic else compose_scale)
    composed = composer(g, inner, c.name, fmt, shape, folded, fresh) if compose is True \
        else (compose or "not asked for")
    folded_convs = meta_json(folded, Meta.FOLDED_CONVS, [])
    if isinstance(composed, Composed):
        nodes, inits = composed.front
        frames = {inner, *composed.aliases}
        for node in g.node:  # the helpers that read only the frame's size and channel 0 get the Y plane
            for i, name in enumerate(node.input):
                if name in frames:
                    node.input[i] = composed.luma
        old = [n for n in g.node if node_key(n) not in composed.replaced]
        folded_convs = [x for x in folded_convs if x not in composed.replaced] + composed.convs
        stem_nodes = [m for n in composed.replaced.values() for m in n]
        # the model's own ops copied onto each piece stay the network's (precision treats them as such)
        extra_helpers = [node_key(m) for m in stem_nodes
                         if node_key(m) not in composed.convs and node_key(m) not in composed.copies]
        form: dict[str, object] = {"form": "composed", "macs_per_output": composed.macs,
                                   "stems": sorted(composed.macs), "joined_after": composed.joined}
        if composed.neutral is not None:
            form["neutral_rgb"] = composed.neutral
    else:
        prefix = fresh.prefix(f"edgefold/{fmt.genicam}")
        if fmt.mosaic:
            nodes, inits = demosaic(c.name, inner, fmt, shape, prefix)
        elif fmt.chroma:
            nodes, inits = yuv(c.name, inner, fmt, shape, prefix)
        else:
            nodes, inits = rescale(c.name, inner, fmt, prefix)
        old, stem_nodes, extra_helpers = list(g.node), [], []
        form = {"form": "front end", "macs_per_pixel": macs_per_pixel(fmt)}
        if isinstance(composed, str):
            form["not_composed"] = composed
    del g.node[:]
    g.node.extend(nodes + stem_nodes + old)
    g.initializer.extend(inits)
    if isinstance(composed, Composed):
        made = {o for n in nodes + stem_nodes for o in n.output}  # a reused name may change shape: not stale info
        kept_info = [v for v in g.value_info if v.name not in made]
        del g.value_info[:]
        g.value_info.extend(kept_info)
        constants = {node_key(n) for n in g.node if n.op_type == "Constant"}  # a dead one is dead whoever made it
        _drop_unused(g, {i for n in composed.replaced for i in composed.weights.get(n, [])},
                     set(helper_outputs(folded)) | constants)
    contract = InputContract(name=c.name, dtype=fmt.dtype, layout=c.layout, channels=fmt.channels,
                             channel_order=fmt.genicam, shape=tuple(shape), channel_axis=c.channel_axis,
                             pixel_range=(0.0, fmt.max_value))
    write_meta(out, {
        Meta.INPUT_CONTRACTS: json.dumps([contract.to_json()]),
        Meta.SOURCE_INPUTS: json.dumps([]),  # not a per-pixel map of the original's input: see FRONTEND
        Meta.HELPER_NODES: json.dumps(helper_outputs(folded) + [node_key(n) for n in nodes] + extra_helpers),
        Meta.FOLDED_CONVS: json.dumps(folded_convs),
        **({Meta.RAW_TENSORS: json.dumps(composed.raw),
            Meta.RAW_OFFSET: json.dumps([composed.raw_offset] * len(composed.raw))}
           if isinstance(composed, Composed) and composed.raw else {}),
        Meta.FRONTEND: json.dumps({"kind": "pixel-format", "format": fmt.genicam, "bits": fmt.bits,
                                   "mosaic": fmt.mosaic, "chroma": fmt.chroma,
                                   "yuv": fmt.yuv if fmt.chroma else None, "folded_contract": c.to_json(),
                                   # how the original receives the converted (8-bit range) frame: compare uses it
                                   "source_inputs": meta_json(folded, Meta.SOURCE_INPUTS, []), **form}),
    })
    onnx.checker.check_model(out)
    return out



def _folded_input(folded: onnx.ModelProto, fmt: PixelFormat) -> InputContract:
    """The folded model's one image input, if ``fmt`` can feed it (else a one-line UsageError)."""
    contracts = contracts_of(folded)
    if len(contracts) != 1:
        raise UsageError(f"--pixel-format needs a model with one folded image input, this one has {len(contracts)}")
    c = contracts[0]
    if c.dtype != "float32":
        raise UsageError(f"--pixel-format: the folded input '{c.name}' must be float32 (fold with --input-dtype float32)")
    colour = bool(fmt.mosaic or fmt.chroma)
    if colour and (c.layout != "NCHW" or c.channels != 3):
        raise UsageError(f"--pixel-format {fmt.genicam}: a colour camera feeds a 3-channel NCHW model; input "
                         f"'{c.name}' is {c.channels}-channel {c.layout}")
    if fmt.chroma and c.static_size() is None:
        raise UsageError(f"--pixel-format {fmt.genicam}: give the camera's size with --input-size HxW (the 4:2:0 "
                         f"planes are laid out by it)")
    if not colour and c.channels != 1:
        raise UsageError(f"--pixel-format {fmt.genicam}: a gray camera feeds a model folded for gray input; input "
                         f"'{c.name}' has {c.channels} channels (fold with --gray)")
    from edgefold.graph.index import opset_of

    opset = opset_of(folded)
    needed = 12 if fmt.mosaic and c.static_size() is None else 11  # Range/Resize; int64 Min/Max from 12
    if colour and opset < needed:
        raise UsageError(f"--pixel-format {fmt.genicam}: the front end uses opset-{needed} ops and the model is opset "
                         f"{opset}; convert it (onnx.version_converter.convert_version(model, 13))"
                         + (" or fix the size with --input-size HxW" if needed == 12 else ""))
    return c


def _buffer_shape(c: InputContract, fmt: PixelFormat) -> list:
    """The engine input's shape: the camera's buffer (N x 1 x H x W; 3H/2 x W for 4:2:0; H x 2W for 4:2:2)."""
    shape = list(c.shape)
    colour = bool(fmt.mosaic or fmt.chroma)
    if colour:
        shape[1] = 1
    if fmt.chroma:
        h, w = c.static_size()  # type: ignore[misc]
        if w % 2 or (h % 2 and not fmt.packed):
            need = "4:2:2 needs an even width" if fmt.packed else "4:2:0 needs an even height and width"
            raise UsageError(f"--pixel-format {fmt.genicam}: {need}, the model takes {h}x{w}")
        shape[2:4] = fmt.buffer_size(h, w)
    return shape


def _drop_unused(g: onnx.GraphProto, names: set[str], nodes: set[str]) -> None:
    """Remove the nodes in ``nodes`` (by ``node_key``) and the initialisers in ``names`` that nothing reads any
    more."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if node_key(n) in nodes and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            names.update(n.input)
            g.node.remove(n)
    keep = [t for t in g.initializer if t.name not in names or t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)



def attach_checked(folded: onnx.ModelProto, fmt: PixelFormat, verify: bool = True,
                   sizes: tuple[tuple[int, int], ...] | None = None,
                   original: onnx.ModelProto | str | None = None) -> tuple[onnx.ModelProto, str]:
    """``attach``, then the result checked against the folded model fed the float reference conversion of the
    same camera frames (``check_front_end``; ``original``, the model that was folded or its path, gives the
    float32 noise floor the verdict also accepts); the model and a one-line summary for the report."""
    model = attach(folded, fmt)
    c = contracts_of(folded)[0]
    size = c.static_size()
    fixed = [d if isinstance(d, int) else None for d in (c.shape[2:4] if c.layout == "NCHW" else c.shape[1:3])]
    # a dynamic height or width is checked at two sizes (odd and even); a fixed one keeps its value
    checked = [size] if size else [(fixed[0] or h, fixed[1] or w) for h, w in (sizes or [(67, 93), (128, 160)])]
    if not verify:
        return model, f"pixel format {fmt.genicam}: {describe(model)}; not verified (--no-verify)"
    try:
        v = check_front_end(model, folded, fmt, checked, original=original)
    except VerificationFailed:
        if meta_json(model, Meta.FRONTEND, {}).get("form") != "composed":
            raise
        # a composed stem that differs beyond what float32 rounding explains: the front end instead
        model = attach(folded, fmt, compose="the composed stem differed from the float reference by more than "
                                            "the original's own float32 noise")
        v = check_front_end(model, folded, fmt, checked, original=original)
    return model, (f"pixel format {fmt.genicam}: {describe(model)}; verified against the float reference on "
                   f"{', '.join(f'{h}x{w}' for h, w in checked)}: {v.worst_text()}")


def check_front_end(model: onnx.ModelProto, folded: onnx.ModelProto, fmt: PixelFormat,
                    sizes: list[tuple[int, int]], rtol: float = 1e-4, atol: float = 1e-5,
                    original: onnx.ModelProto | str | None = None) -> Verification:
    """The model on raw camera frames against the folded model on the float reference conversion of the same
    frames, judged per frame by the fp32 verdict (``edgefold.verdict``): within the fixed bound, or within K
    times ``original``'s own float32 noise floor on that frame (measured only where the bound fails; without
    ``original`` the bound alone decides). Raises VerificationFailed."""
    from edgefold.backends.ort import session
    from edgefold.core.frames import synthetic_frames
    from edgefold.folding.verify import judge

    c = contracts_of(model)[0]
    inner = InputContract.from_json(meta_json(model, Meta.FRONTEND)["folded_contract"])
    s_model, s_folded = session(model), session(folded)
    names = [o.name for o in s_model.get_outputs()]
    refs, gots, converted = [], [], []
    for h, w in sizes:
        rows, cols = fmt.buffer_size(h, w)
        for raw in synthetic_frames(rows, cols, 1, fmt.max_value, seed=h * 31 + w):
            x = raw[0].astype(np.dtype(fmt.dtype))
            frame = fmt.reference(raw, inner.channels)
            gots.append(s_model.run(names, {c.name: _batched(x, c.shape)}))
            refs.append(s_folded.run(names, {inner.name: _batched(frame.astype(np.float32), inner.shape)}))
            converted.append(frame)
    del s_model, s_folded
    v = judge(names, refs, gots, rtol, atol, lambda: _original_floors(original, folded, names, converted),
              tuple(sizes), f"{fmt.genicam} model")
    if not v.passed:
        raise VerificationFailed(f"the {fmt.genicam} front end differs from the float reference: {v.worst_text()}; "
                                 f"{v.worst.decided_by}; nothing written - please report this model")
    return v


def _original_floors(original: onnx.ModelProto | str | None, folded: onnx.ModelProto, names: list[str],
                     frames: list[np.ndarray]) -> list[list[float]] | None:
    """Per frame, per output: how far ``original`` itself moves under +-1 ulp of its first conv's input, fed each
    converted (8-bit range) frame as the fold recorded (``Meta.SOURCE_INPUTS``); None where it cannot be run."""
    import dataclasses

    from edgefold.compare.feeds import read_as_float
    from edgefold.core.frames import InputFeed
    from edgefold.graph.io import load_model

    sources = meta_json(folded, Meta.SOURCE_INPUTS, [])
    if original is None or len(sources) != 1:
        return None
    feed = InputFeed.from_json(sources[0])
    model = load_model(original) if isinstance(original, str) else original
    if np.dtype(feed.dtype).kind in "iu":  # the converted frame unrounded, as the folded model sees it
        if model is original:
            model = onnx.ModelProto()
            model.CopyFrom(original)  # type: ignore[arg-type]
        if read_as_float(model, feed.name):
            feed = dataclasses.replace(feed, dtype="float32")
    probe = verdict.NoiseProbe(model, names)
    if not probe.measures:
        return None
    return [probe.run({feed.name: feed.tensor(f)}).floors for f in frames]


def _batched(x: np.ndarray, shape: tuple) -> np.ndarray:
    """(H, W) or (C, H, W) as the input's (N, C, H, W) or (N, H, W), repeated to a fixed batch."""
    batch = shape[0] if isinstance(shape[0], int) else 1
    if len(shape) == 4 and x.ndim == 2:
        x = x[None]
    if len(shape) == 3 and x.ndim == 3:
        x = x[0]
    return np.ascontiguousarray(np.broadcast_to(x[None], (batch, *x.shape)))
