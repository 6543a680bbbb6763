"""Every exception edgefold raises on purpose maps to its documented exit code (issue 11): a scan of the raise
sites in the source, so a new ``raise ValueError`` on bad input (exit 5, "internal error") fails here."""
from __future__ import annotations

import ast
from pathlib import Path

import edgefold
from edgefold import errors

SOURCE = Path(edgefold.__file__).parent
# guards of invariants inside pure maths/plumbing: raised only on a bug, so exit 5 is right for them
INTERNAL = {("core/affine.py", "ValueError"), ("graph/outputs.py", "RuntimeError"),
            # Python protocols: module __getattr__ and json's default= hook
            ("__init__.py", "AttributeError"), ("folding/__init__.py", "AttributeError"),
            ("core/jsonable.py", "TypeError")}
ARGPARSE = "ArgumentTypeError"  # argparse turns it into its one-line error, exit 2
# exceptions raised inside recognisers and caught by the matcher (they never reach the CLI)
CAUGHT = {"Refusal", "NothingToFold", "NotShapeOnly", "_OriginalFailed"}


def _raises() -> list[tuple[str, str, int, str]]:
    out = []
    for path in SOURCE.rglob("*.py"):
        rel = str(path.relative_to(SOURCE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = call.attr if isinstance(call, ast.Attribute) else getattr(call, "id", "")
                text = ast.get_source_segment(path.read_text(), node) or ""
                out.append((rel, name, node.lineno, text))
    return out


def test_every_raise_site_has_a_documented_exit_code():
    known = {cls.__name__: code for cls, code in errors.EXIT_CODES.items()}
    unexpected = []
    for rel, name, line, _ in _raises():
        if name in known or name in CAUGHT or (rel, name) in INTERNAL or name == ARGPARSE:
            continue
        if name in ("", "err", "SystemExit"):  # bare re-raise / argparse's exit
            continue
        if name.endswith("Error") or name.endswith("Exception"):
            unexpected.append(f"{rel}:{line} raises {name}")
    assert not unexpected, "raise sites outside errors.EXIT_CODES (exit 5 on bad input):\n" + "\n".join(unexpected)


def test_exit_codes_are_the_documented_ones():
    assert errors.EXIT_CODES[errors.UsageError] == 2
    assert errors.EXIT_CODES[errors.UnsupportedGraph] == 3
    assert errors.EXIT_CODES[errors.MissingTensorRT] == 4
    assert errors.EXIT_CODES[errors.EngineMismatch] == 4 and errors.EXIT_CODES[errors.DeviceError] == 4
    assert errors.EXIT_CODES[errors.VerificationFailed] == 1
    for cls, code in errors.EXIT_CODES.items():
        assert cls.exit_code == code, cls


def test_a_frame_outside_the_profile_is_a_usage_error_not_missing_tensorrt():
    sites = [(rel, name) for rel, name, _, text in _raises() if "outside the engine's profile" in text]
    assert sites == [("runtime/trt_backend.py", "UsageError")]


def test_an_undeserialisable_engine_is_an_engine_mismatch_everywhere():
    sites = {name for _, name, _, text in _raises() if "cannot load this engine" in text or "cannot deserialise" in text}
    assert sites == {"EngineMismatch"}
