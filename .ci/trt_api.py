#!/usr/bin/env python3
"""TensorRT's own Python API, both majors, on a machine without TensorRT: bindings to introspect, and stubs.

NVIDIA's PyPI wheels ``tensorrt-cu12-bindings`` carry the real Python module (``tensorrt.so``) without the
native libraries. The module loads once ``libnvinfer.so.N``, ``libnvinfer_plugin.so.N`` and
``libnvonnxparser.so.N`` resolve to libraries exporting the C entry points it links against (``nm -D``: the
``create*_INTERNAL`` factories, the plugin registries, ``initLibNvInferPlugins``, ``getNvOnnxParserVersion``);
everything else goes through C++ vtables. This script, for each version in VERSIONS:

  OUT/<major>/site   the wheel (pip install --target, no deps) and ``tensorrt`` -> ``tensorrt_bindings``
  OUT/<major>/lib    stand-in libraries compiled with gcc: each entry point returns 0 (NULL). They let the
                     module import for introspection only: creating a Builder or Runtime fails, nothing is
                     built or run.
  OUT/<major>/stubs  ``pybind11-stubgen tensorrt`` with the C++ names it cannot express repaired (below)

Usage:  python .ci/trt_api.py OUT        then:  MYPYPATH=OUT/10/stubs mypy edgefold  (and OUT/11/stubs)
        python .ci/trt_api.py --env OUT/11   prints the PYTHONPATH and LD_LIBRARY_PATH that import that version
Exit 1 with one line when a wheel, gcc or a stub cannot be had: CI must never type-check without TensorRT.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

VERSIONS = {"10": "10.3.0", "11": "11.4.0.106"}  # JetPack 6 (TensorRT 10.3) and the newest 11.x on PyPI
LIBS = {  # soname stem -> the C entry points tensorrt.so imports from it (nm -D --undefined-only)
    "libnvinfer": ("void *createInferBuilder_INTERNAL(void *logger, int version)",
                   "void *createInferRuntime_INTERNAL(void *logger, int version)",
                   "void *createInferRefitter_INTERNAL(void *engine, void *logger, int version)",
                   "void *getPluginRegistry(void)",
                   "void *getBuilderPluginRegistry(int capability)"),
    "libnvinfer_plugin": ("int initLibNvInferPlugins(void *logger, const char *ns)",),
    "libnvonnxparser": ("void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version)",
                        "void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version)",
                        "int getNvOnnxParserVersion(void)"),
}
# enums pybind11 prints by their short name in default values; where they live in the module
ENUMS = ("Severity:tensorrt.ILogger", "DataType:tensorrt", "ExecutionContextAllocationStrategy:tensorrt",
         "PluginFieldType:tensorrt", "EngineStat:tensorrt")
CPP_NAME = re.compile(r"\b(?:nvinfer1|nvonnxparser)::(?:v_\d+_\d+::)?(\w+)")  # nvinfer1::v_1_0::IGpuAllocator
CPP_ANY = re.compile(r"\bdetail::accessor<[^>]*>|\bcapsule\b")  # no Python type: a raw accessor, a PyCapsule
# the module exports DataType aliases named like builtins (``tensorrt.bool``): in a stub that shadows the type
SHADOWED = re.compile(r"(?<![.\w])bool\b")
SIGNATURE = re.compile(r"^\s*(def \w+\(|\w+: )")
KEYWORD_PARAM = re.compile(r"(?<=[(,] )(in|from|is|lambda|global|def|class)(?=: )")  # `def f(self, in: ...)`


def fail(msg: str) -> None:
    raise SystemExit(f"trt_api: {msg}")


def run(cmd: list[str], what: str, env: dict | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip() and "WARNING: Location" not in ln]
        fail(f"{what} failed: {(lines or ['no output'])[-1][:300]}")
    return done.stdout


def install(version: str, site: Path) -> None:
    if (site / f"tensorrt_cu12_bindings-{version}.dist-info").is_dir():
        return
    shutil.rmtree(site, ignore_errors=True)
    run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target",
         str(site), f"tensorrt-cu12-bindings=={version}"], f"pip install tensorrt-cu12-bindings=={version}")
    (site / "tensorrt").symlink_to("tensorrt_bindings")  # `import tensorrt`, as TensorRT's own packages name it


def stand_ins(major: str, lib: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        fail("no C compiler for the stand-in TensorRT libraries: `apt-get install gcc`")
    lib.mkdir(parents=True, exist_ok=True)
    for stem, functions in LIBS.items():
        so = lib / f"{stem}.so.{major}"
        if so.is_file():
            continue
        src = lib / f"{stem}.c"
        src.write_text("/* stand-in: lets tensorrt.so load for introspection; nothing here works */\n"
                       + "".join(f"{f} {{ return 0; }}\n" for f in functions))
        run([gcc, "-shared", "-fPIC", "-o", str(so), f"-Wl,-soname,{so.name}", str(src)], f"gcc {src.name}")


def environment(home: Path) -> dict[str, str]:
    """The environment under which ``import tensorrt`` loads that version's bindings over the stand-ins."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(home / "site")] + [p for p in [env.get("PYTHONPATH")] if p])
    env["LD_LIBRARY_PATH"] = os.pathsep.join([str(home / "lib")] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    return env


def split_params(params: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(params):
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(params[start:i])
            start = i + 1
    return parts + [params[start:]]


def default_after_default(line: str) -> str:
    """pybind11 allows a required parameter after defaulted ones (``add_scale_nd(..., power=None,
    channel_axis)``); Python does not: such parameters get ``= ...`` (still passable by position)."""
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$", line)
    if m is None:
        return line
    params, seen_default = [], False
    for p in split_params(m.group(2)):
        if "=" in p:
            seen_default = True
        elif seen_default and p.strip() and not p.strip().startswith("*"):
            p += " = ..."
        params.append(p)
    return m.group(1) + ",".join(params) + m.group(3)


def repair(text: str, label: str) -> tuple[str, int]:
    """pybind11 signatures name C++ types where a binding forgot to register the Python name: map those to
    the Python class of the same name (``nvinfer1::ICudaEngine`` -> ``ICudaEngine``) and what has no Python
    class to ``typing.Any``. Only signature lines change (docstrings may mention C++ freely)."""
    count = 0
    classes = set(re.findall(r"^class (\w+)", text, re.M))

    def python_name(m: re.Match) -> str:  # nvinfer1::IBuilder is bound as Builder, IParserError as ParserError
        name = m.group(1)
        return name if name in classes else name[1:] if name[1:] in classes else "typing.Any"

    def fix(line: str) -> str:
        nonlocal count
        if not SIGNATURE.match(line):
            return line
        new = CPP_ANY.sub("typing.Any", CPP_NAME.sub(python_name, line))
        new = KEYWORD_PARAM.sub(r"\1_", new)  # a parameter named like a keyword cannot be passed by name anyway
        if not new.startswith("bool:"):  # the alias itself stays
            new = SHADOWED.sub("builtins.bool", new)
        count += new != line
        return new

    out = "\n".join(fix(line) for line in text.splitlines()) + "\n"
    try:
        ast.parse(out)
    except SyntaxError:
        fixed = [default_after_default(line) for line in out.splitlines()]
        count += sum(a != b for a, b in zip(fixed, out.splitlines()))
        out = "\n".join(fixed) + "\n"
    future = "from __future__ import annotations\n"
    for module in ("builtins", "typing"):
        if count and not re.search(rf"^import {module}$", out, re.M):
            out = out.replace(future, f"{future}import {module}\n", 1)
    try:
        ast.parse(out)
    except SyntaxError as err:
        fail(f"{label}:{err.lineno}: stub still not valid Python after repair: {err.text!r}")
    return out, count


def stubs(home: Path, version: str) -> int:
    out = home / "stubs"
    shutil.rmtree(out, ignore_errors=True)
    stubgen = Path(sys.executable).with_name("pybind11-stubgen")
    cmd = [str(stubgen) if stubgen.exists() else "pybind11-stubgen", "tensorrt", "-o", str(out),
           "--print-invalid-expressions-as-is", "--ignore-invalid-expressions", r"(nvinfer1|nvonnxparser|detail)::",
           "--ignore-unresolved-names", "capsule", "--exit-code"]
    for enum in ENUMS:
        cmd += ["--enum-class-locations", enum]
    run(cmd, f"pybind11-stubgen for TensorRT {version}", env=environment(home))
    repaired = 0
    for pyi in sorted(out.rglob("*.pyi")):
        text, n = repair(pyi.read_text(), str(pyi.relative_to(out)))
        pyi.write_text(text)
        repaired += n
    if not (out / "tensorrt" / "__init__.pyi").is_file():
        fail(f"pybind11-stubgen wrote no tensorrt/__init__.pyi for TensorRT {version}")
    return repaired


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--env":
        env = environment(Path(argv[1]).resolve())
        print(f"PYTHONPATH={env['PYTHONPATH']}\nLD_LIBRARY_PATH={env['LD_LIBRARY_PATH']}")
        return
    if len(argv) != 1:
        raise SystemExit(__doc__)
    root = Path(argv[0]).resolve()
    for major, version in VERSIONS.items():
        home = root / major
        install(version, home / "site")
        stand_ins(major, home / "lib")
        check = "import tensorrt, sys; sys.stdout.write(tensorrt.__version__)"
        got = run([sys.executable, "-c", check], f"import tensorrt {version} over the stand-ins", env=environment(home))
        if got != version:
            fail(f"{home / 'site'} imports TensorRT {got}, expected {version}")
        n = stubs(home, version)
        (home / "VERSION").write_text(version + "\n")
        print(f"trt_api: TensorRT {version} bindings and stubs in {home} ({n} signature lines repaired)")


if __name__ == "__main__":
    main(sys.argv[1:])
