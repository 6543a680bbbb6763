#!/usr/bin/env bash
# Prepare on the host (or here), build the engine on the device, then compare and bench it on the device.
#   jetson/build_on_device.sh MODEL.onnx CALIB_DIR [fp16|int8] [extra edgefold build flags...]
# Engines are specific to the GPU and TensorRT version: always build them on the target Jetson.
set -euo pipefail
MODEL="$1"; CALIB="$2"; PRECISION="${3:-int8}"; shift $(( $# >= 3 ? 3 : $# ))
NAME="$(basename "${MODEL%.onnx}")"
OUT="engines/${NAME}.${PRECISION}.engine"
mkdir -p engines
echo "== power mode and clocks (fix them before measuring: sudo nvpmodel -m 0 && sudo jetson_clocks)"
(nvpmodel -q 2>/dev/null || true) | head -2

if [ -f "engines/${NAME}.${PRECISION}.prepared.onnx" ] && [ ! -f "$OUT" ]; then
  echo "== prepared files found (made on a host with --no-engine): building with trtexec"
  bash "engines/${NAME}.${PRECISION}.trtexec.sh"
  echo "note: edgefold build records the TensorRT version and GPU in the sidecar; trtexec does not" >&2
else
  echo "== edgefold build (fold, ${PRECISION} on the CPU, verified, engine)"
  edgefold build "$MODEL" "--${PRECISION}" --calib "$CALIB" -o "$OUT" "$@"
fi
echo "== compare against the original 3-channel graph on real frames"
edgefold compare "$MODEL" "$OUT" --images "$CALIB" --report "engines/${NAME}.${PRECISION}.compare.json"
echo "== latency per camera frame"
edgefold bench "$OUT" --frames 50
