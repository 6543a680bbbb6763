#!/usr/bin/env bash
# On a Jetson (JetPack 6: TensorRT 10.3, Python 3.10, CUDA 12.6; JetPack 7: TensorRT 10.13, Python 3.12,
# CUDA 13): a venv that sees JetPack's TensorRT bindings, edgefold installed into it, and a report of
# what is there. Usage: jetson/setup.sh [VENV_DIR]   (default .venv-jetson)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-jetson}"

if [ ! -f /etc/nv_tegra_release ]; then
  echo "setup.sh: /etc/nv_tegra_release not found - this does not look like a Jetson (continuing anyway)" >&2
fi
if ! python3 -c "import tensorrt" 2>/dev/null; then
  echo "setup.sh: JetPack's TensorRT Python bindings are missing: sudo apt-get install nvidia-jetpack" \
       "(or python3-libnvinfer), then run this again" >&2
  exit 4
fi
# --system-site-packages: the tensorrt module comes from apt, not from pip
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e .
# CUDA buffers for edgefold.runtime: cuda-python matching the CUDA major, else an existing pycuda
CUDA_MAJOR=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9]*\)\..*/\1/p' || true)
if ! "$VENV/bin/python" -c "import pycuda" 2>/dev/null && [ -n "$CUDA_MAJOR" ]; then
  "$VENV/bin/python" -m pip install -q "cuda-python>=${CUDA_MAJOR},<$((CUDA_MAJOR + 1))" \
    || echo "setup.sh: cuda-python ${CUDA_MAJOR}.x did not install; install pycuda instead" >&2
fi

"$VENV/bin/python" - <<'PY'
import importlib, platform, shutil, subprocess
print(f"python      {platform.python_version()}")
try:
    import tensorrt as trt
    print(f"tensorrt    {trt.__version__}")
    builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
    print(f"DLA cores   {builder.num_DLA_cores}")
    print(f"fast fp16   {builder.platform_has_fast_fp16}   fast int8 {builder.platform_has_fast_int8}")
except Exception as err:  # noqa: BLE001
    print(f"tensorrt    not usable: {err}")
for mod in ("cuda.bindings", "cuda", "pycuda"):
    try:
        importlib.import_module(mod)
        print(f"{mod:11s} yes")
    except Exception:  # noqa: BLE001
        print(f"{mod:11s} no")
nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
try:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    print(f"cuda        {out}")
except Exception:  # noqa: BLE001
    print("cuda        nvcc not found (/usr/local/cuda/bin)")
trtexec = "/usr/src/tensorrt/bin/trtexec"
print(f"trtexec     {trtexec if shutil.which(trtexec) else 'not found'}")
PY
echo "setup.sh: done - activate with: source $VENV/bin/activate"
