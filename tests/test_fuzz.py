"""Seeded fuzzing of ``edgefold fold`` (issue 14): byte-level and graph-level mutations of small test models.

Whatever the mutation, a run must end with a documented exit code other than 5 (internal error), print at
most one line on stderr when it fails, leave no output file behind on failure, and never change its input.
A mutated model that still folds has passed the fold's own onnxruntime self-check. Hypothesis is seeded
(``derandomize``), so CI sees the same few hundred cases every run.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefold.cli.main import main
from tests.models import NAMINGS, gray_model, rename_nodes

# EDGEFOLD_FUZZ=N runs N examples a test, EDGEFOLD_FUZZ_RANDOM=1 new ones each run (a longer hunt by hand)
FUZZ = os.environ.get("EDGEFOLD_FUZZ")
RANDOM = bool(os.environ.get("EDGEFOLD_FUZZ_RANDOM"))
SETTINGS = settings(max_examples=int(FUZZ or 400), deadline=None, derandomize=not RANDOM, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _seed_models() -> list[bytes]:
    return [gray_model("concat", h=12, w=14, cout=4).SerializeToString(),
            gray_model("tile", h=9, w=11, k=3, stride=1, cout=3, dtype=np.float32).SerializeToString(),
            gray_model("expand", h=10, w=10, k=5, stride=2, cout=2, as_node=True).SerializeToString()]


SEEDS = _seed_models()


def _colour_seed_models() -> list[bytes]:
    """RGB models with their normalisation in the graph, for the camera formats that compose into the stem."""
    from tests.test_pixel_formats import _stem_then, rgb_model

    return [rgb_model(24, 32).SerializeToString(), _stem_then("bn-relu-maxpool", 24, 32).SerializeToString(),
            _stem_then("silu-avgpool", 22, 30).SerializeToString(), rgb_model(24, 32, 3, 1, 1).SerializeToString()]


COLOUR_SEEDS = _colour_seed_models()


def _fold_run(model_bytes: bytes, extra: list[str] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.onnx", Path(tmp) / "out" / "o.onnx"
        src.write_bytes(model_bytes)
        out.parent.mkdir()
        digest = hashlib.sha256(model_bytes).hexdigest()
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(["fold", str(src), "-o", str(out), *(extra or [])])
            except SystemExit as e:
                code = int(e.code or 0)
        text = err.getvalue()
        from hypothesis import event
        event(f"exit {code}")
        assert code in (0, 2, 3), text
        assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
        if code == 0:
            onnx.load(str(out))
        else:
            assert text.count("\n") == 1 and text.startswith("edgefold: error: "), text
            assert not any(out.parent.iterdir()), list(out.parent.iterdir())


@st.composite
def byte_mutations(draw) -> bytes:
    data = bytearray(SEEDS[draw(st.integers(0, len(SEEDS) - 1))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos:pos + draw(st.integers(1, 8))]
        if not data:
            break
    return bytes(data)


@SETTINGS
@given(byte_mutations())
def test_byte_mutations_never_crash_or_write_a_wrong_file(model_bytes):
    _fold_run(model_bytes)


INTS = st.integers(-3, 9)


class Recipe:
    """Graph mutations as they were drawn, printed readably when a case fails."""

    def __init__(self, seed: int, seeds: list[bytes]) -> None:
        self.seed, self.steps, self.model = seed, [], onnx.ModelProto()
        self.model.ParseFromString(seeds[seed])

    def __repr__(self) -> str:
        dims = [d.dim_value or d.dim_param for d in self.model.graph.input[0].type.tensor_type.shape.dim]
        return f"Recipe(seed model {self.seed}, input {dims}: {'; '.join(self.steps)})"


@st.composite
def graph_mutations(draw, seeds: list[bytes] | None = None) -> Recipe:
    recipe = Recipe(draw(st.integers(0, len(seeds or SEEDS) - 1)), seeds or SEEDS)
    m = recipe.model
    g = m.graph
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["attr_ints", "attr_int", "input_dim", "elem_type", "init_dims", "init_value",
                                     "rewire", "drop_node", "op_type", "opset", "output_rename"]))
        node = g.node[draw(st.integers(0, len(g.node) - 1))] if len(g.node) else None
        if kind in ("attr_ints", "attr_int") and node is not None and node.attribute:
            a = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
            if a.type == onnx.AttributeProto.INTS and a.ints:
                a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(INTS)
            elif a.type == onnx.AttributeProto.INT:
                a.i = draw(INTS)
        elif kind == "input_dim":
            dims = g.input[0].type.tensor_type.shape.dim
            d = dims[draw(st.integers(0, len(dims) - 1))]
            if draw(st.booleans()):
                d.dim_value = draw(st.integers(0, 5))
            else:
                d.dim_param = "dyn"
        elif kind == "elem_type":
            g.input[0].type.tensor_type.elem_type = draw(st.sampled_from([1, 2, 3, 6, 7, 10, 11]))
        elif kind in ("init_dims", "init_value") and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            arr = onnx.numpy_helper.to_array(t).copy()
            if kind == "init_dims" and arr.size:
                arr = arr.reshape(-1)[: draw(st.integers(0, arr.size))]
            elif arr.size and arr.dtype.kind == "f":
                arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([0.0, -1.0, 1e30, np.inf, np.nan]))
            t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
        elif kind == "rewire" and node is not None and node.input:
            names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names + ["", "ghost"]))
        elif kind == "drop_node" and node is not None:
            g.node.remove(node)
        elif kind == "op_type" and node is not None:
            node.op_type = draw(st.sampled_from(["Add", "Mul", "Relu", "Conv", "Concat", "Identity", "Gather",
                                                 "MaxPool", "Transpose", "NoSuchOp"]))
        elif kind == "opset":
            m.opset_import[0].version = draw(st.integers(1, 25))
        elif kind == "output_rename":
            g.output[0].name = draw(st.sampled_from([n.output[0] for n in g.node if n.output] + ["ghost"]))
        recipe.steps.append(f"{kind} on {node.name if node is not None else '-'}")
    # a dimension of every case: node names as converters leave them, missing or repeated (valid ONNX either way)
    naming = draw(st.sampled_from(NAMINGS))
    if naming != "kept":
        rename_nodes(g, naming)
        recipe.steps.append(f"node names {naming}")
    return recipe


@SETTINGS
@given(graph_mutations(), st.sampled_from([[], ["--gray"], ["--input-dtype", "uint8"], ["--border", "approx"],
                                          ["--pixel-format", "Mono12"], ["--pixel-format", "BayerRG8"]]))
def test_graph_mutations_never_crash_or_write_a_wrong_file(recipe, extra):
    _fold_run(recipe.model.SerializeToString(), extra)


@settings(max_examples=int(FUZZ or 200), deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(graph_mutations(COLOUR_SEEDS), st.sampled_from([["--pixel-format", "BayerRG8"], ["--pixel-format", "BayerGB12"],
                                                       ["--pixel-format", "NV12"], ["--pixel-format", "YUV422_8"],
                                                       ["--pixel-format", "NV21", "--yuv", "bt709-full"]]))
def test_colour_models_in_camera_formats_never_crash_or_write_a_wrong_file(recipe, extra):
    """Mutated RGB models (stem, BN/ReLU/SiLU, pools) folded for Bayer and YUV cameras, where the conversion is
    composed into the stem: exit 0 (and the fold's own check passed) or a one-line refusal, nothing partial."""
    _fold_run(recipe.model.SerializeToString(), extra)
