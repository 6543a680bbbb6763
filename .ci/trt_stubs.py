#!/usr/bin/env python3
"""TensorRT type stubs for mypy, on machines where TensorRT itself cannot be installed.

PyPI's ``tensorrt-stubs`` wheel carries ``.pyi`` files of the TensorRT 10.13 Python API, but mypy cannot
use it as shipped: there is no ``py.typed`` marker to make pip's install usable, and a few generated
signatures are not valid Python (a parameter named ``in``, a required parameter after defaulted ones).
This downloads the wheel without dependencies (its ``tensorrt`` dependency is a stub package that cannot
install here), unpacks the stubs into OUT_DIR and relaxes each signature Python cannot parse to
``(self, *args, **kwargs)`` with its return type kept, so every other call is still checked.

Usage:  python .ci/trt_stubs.py OUT_DIR       then:  MYPYPATH=OUT_DIR mypy edgefold
Exit 1 with one line when the wheel cannot be had or a stub cannot be repaired: CI must not silently
type-check without TensorRT.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PIN = "tensorrt-stubs==10.13.0.35.1"
PACKAGES = ("tensorrt/", "tensorrt_bindings/")
DEF_LINE = re.compile(r"^(?P<indent>\s*)def (?P<name>\w+)\(.*\)\s*(?P<ret>->\s*[^:]+)?:\s*$")


def download(into: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                           "-d", str(into), PIN], capture_output=True, text=True)
    wheels = sorted(into.glob("tensorrt_stubs-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise SystemExit(f"trt_stubs: cannot download {PIN} ({reason})")
    return wheels[0]


def relax_unparsable(text: str, label: str) -> tuple[str, int]:
    """Rewrite the ``def`` lines Python cannot parse; returns the new text and how many were rewritten."""
    lines = text.splitlines()
    rewritten = 0
    while True:
        try:
            ast.parse("\n".join(lines))
        except SyntaxError as err:
            i = (err.lineno or 1) - 1
            while i > 0 and not lines[i].lstrip().startswith("def "):
                i -= 1
            m = DEF_LINE.match(lines[i])
            if m is None or rewritten > 1000:
                raise SystemExit(f"trt_stubs: {label}:{i + 1}: cannot repair this line: {lines[i][:100]}") from None
            ret = m.group("ret") or "-> typing.Any"
            lines[i] = f"{m.group('indent')}def {m.group('name')}(self, *args: typing.Any, **kwargs: typing.Any) {ret}:"
            rewritten += 1
            continue
        break
    if rewritten:
        lines.insert(0, "import typing")
    return "\n".join(lines) + "\n", rewritten


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="trt-stubs-") as tmp:
        wheel = download(Path(tmp))
        staging = Path(tmp) / "stubs"
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.startswith(PACKAGES) and m.endswith(".pyi")]
            if not members:
                raise SystemExit(f"trt_stubs: {wheel.name} has no tensorrt .pyi files")
            z.extractall(staging, members)
        (staging / "tensorrt_libs.pyi").write_text("")  # imported by tensorrt/__init__.pyi; absent here
        total = 0
        for stub in staging.rglob("*.pyi"):
            text, n = relax_unparsable(stub.read_text(), str(stub.relative_to(staging)))
            if n:
                stub.write_text(text)
                total += n
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(staging, out)
    print(f"trt_stubs: TensorRT 10.13 stubs in {out} ({total} signatures relaxed)")


if __name__ == "__main__":
    main()
