"""``edgefold inspect MODEL``: parameters, MACs and FLOPs per layer; ``--against`` compares two models."""
from __future__ import annotations

import argparse
import json

from edgefold.cli.flags import existing_file
from edgefold.errors import EXIT_OK, UsageError


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, dims = text.rpartition(":")
    try:
        values = tuple(int(v) for v in dims.lower().split("x"))
    except ValueError:
        values = ()
    if not sep or not name or not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected NAME:DIMxDIM..., e.g. input:1x1x2048x2448, got {text!r}")
    return name, values


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="parameters and MACs per layer, before and after folding",
                       description="Per-layer params, MACs (conv/gemm, thop conventions) and FLOPs (pooling, "
                       "elementwise, normalisation). An .engine file is inspected with TensorRT's engine inspector.")
    p.add_argument("model", type=existing_file, help="ONNX model or TensorRT .engine")
    p.add_argument("--against", type=existing_file,
                   help="a second model (e.g. the folded one): side by side, first layer highlighted")
    p.add_argument("--shape", type=_shape_arg, action="append", metavar="NAME:DIMS",
                   help="fix a dynamic input, e.g. input:1x1x2048x2448 (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.model.endswith((".engine", ".plan", ".trt")):  # the file exists (argparse checked): TensorRT reads it
        from edgefold.backends.trt import engine_layers

        info = engine_layers(args.model)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            for layer in info.get("Layers", []):
                print(layer if isinstance(layer, str) else f"{layer.get('Name')}  {layer.get('LayerType')}")
        return EXIT_OK
    from edgefold.graph.io import load_model
    from edgefold.graph.shapes import set_input_shapes
    from edgefold.inspect.count import inventory
    from edgefold.inspect.table import render, render_against

    shapes = dict(args.shape or [])
    before_model = load_model(args.model)
    if shapes:
        before_model = set_input_shapes(before_model, shapes)
    before = inventory(before_model)
    if not args.against:
        print(json.dumps(before.to_json(), indent=2) if args.json else render(before, f"{args.model}"))
        return EXIT_OK
    after_model = load_model(args.against)
    if shapes:
        after_model = _same_size(after_model, shapes)
    after = inventory(after_model)
    from edgefold.graph.names import node_key

    made_after = {o for n in after_model.graph.node for o in n.output}  # nodes by output: names may be empty or repeat
    preprocessing = set(before.preprocessing)  # a stem the fold rewrote (a camera format) is not preprocessing
    removed = [(n.name or f"<{n.op_type} -> {node_key(n)}>", n.op_type) for n in before_model.graph.node
               if node_key(n) not in made_after and node_key(n) in preprocessing]
    if args.json:
        print(json.dumps({"before": before.to_json(), "after": after.to_json(),
                          "removed": [{"name": n, "op": o} for n, o in removed]}, indent=2))
    else:
        print(render(before, args.model))
        print()
        print(render(after, args.against))
        print()
        print(render_against(before, after, removed))
    return EXIT_OK


def _same_size(model, shapes: dict[str, tuple[int, ...]]):
    """Apply --shape to the folded model too: same batch and spatial size, its own channel count."""
    from edgefold.graph.shapes import set_input_shapes

    fixed = {}
    for vi in model.graph.input:
        if vi.name in shapes:
            dims = list(shapes[vi.name])
            old = vi.type.tensor_type.shape.dim
            for i, d in enumerate(old):
                if d.HasField("dim_value") and i < len(dims):
                    dims[i] = d.dim_value
            fixed[vi.name] = tuple(dims)
    if not fixed and shapes:
        raise UsageError("--shape names no input of the --against model")
    return set_input_shapes(model, fixed)
