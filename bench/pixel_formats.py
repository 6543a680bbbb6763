"""Camera-native pixel formats end to end on the CPU (issue 12): one raw camera frame in host memory -> outputs.

Today's pipeline: OpenCV ``cvtColor`` (Bayer demosaic / NV12 -> RGB; for Mono12 a numpy scale and gray
replication), numpy normalisation to a 3-channel float32 tensor, then the original (bare) model. Against it,
the model folded with ``--pixel-format``, fed the camera's buffer as it is. Same process, rounds interleaved,
median of per-round ratios (this machine is noisy); onnxruntime with all graph optimisations, one thread.
The network is a ResNet-style stem (7x7/s2 3->64, BN-free) + ReLU + a 3x3 conv, at 2048x2448 by default.
Bytes per frame: what crosses into the model.

    python bench/pixel_formats.py [--size 2048x2448] [--rounds 7] [--ocr 1024x1024]

``--ocr HxW`` adds PaddleOCR's PP-OCRv4 text detector (the rapidocr-onnxruntime wheel ``./run test`` downloads;
normalised (x/255 - 0.5)/0.5), specialised to that size, in each format; ``--yolo HxW`` an Ultralytics YOLOv8n
detector (the nudenet wheel; x/255).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from edgefold.cli.main import main as edgefold
from edgefold.graph.builder import IMAGENET_MEAN, IMAGENET_STD, ModelBuilder

MEAN, STD = IMAGENET_MEAN.astype(np.float32), IMAGENET_STD.astype(np.float32)


def bare_model(h: int, w: int, net: str = "resnet-stem") -> onnx.ModelProto:
    """A model that expects ImageNet-normalised float RGB: what people feed after CPU preprocessing today.

    ``resnet-stem``: ResNet's stem as torchvision defines it (7x7/s2 conv 3->64, ReLU, 3x3/s2 max pool; BN folded).
    ``stem+conv``: the stem conv, ReLU and a 3x3 conv 64->64 at the stem's resolution (the network of the first
    measurement; that conv is 80 % of its MACs)."""
    b = ModelBuilder(seed=0)
    x = b.input("image", [1, 3, h, w])
    y = b.op("Relu", [b.conv(x, 3, 64, k=7, stride=2, name="stem")])
    if net == "resnet-stem":
        return b.model([b.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])])
    return b.model([b.conv(y, 64, 64, k=3)])


def session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def wheel_model(pattern: str, member: str, what: str, h: int, w: int) -> onnx.ModelProto:
    """A network shipped inside a wheel ``./run test`` downloads into .cache/wheels, specialised to h x w."""
    import zipfile

    from edgefold.graph.shapes import specialise

    root = Path(__file__).resolve().parents[1]
    wheel = sorted((root / ".cache" / "wheels").glob(pattern))
    if not wheel:
        raise SystemExit(f"run `./run test` once first: it downloads the wheel with {what}")
    with zipfile.ZipFile(wheel[0]) as z:
        return specialise(onnx.load_from_string(z.read(member)), (h, w))


def ocr_detector(h: int, w: int) -> onnx.ModelProto:
    return wheel_model("rapidocr_onnxruntime-1.4.4-*.whl", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                       "PP-OCRv4 det (rapidocr-onnxruntime)", h, w)


def yolo_detector(h: int, w: int) -> onnx.ModelProto:
    return wheel_model("nudenet-3.4.2-*.whl", "nudenet/320n.onnx", "YOLOv8n (nudenet)", h, w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2048x2448")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--net", choices=("resnet-stem", "stem+conv"), default="resnet-stem")
    ap.add_argument("--formats", default="BayerRG8,NV12,Mono12")
    ap.add_argument("--ocr", metavar="HxW", help="also PP-OCRv4 det at this size (e.g. 1024x1024)")
    ap.add_argument("--yolo", metavar="HxW", help="also YOLOv8n at this size (e.g. 1088x1920)")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    formats = args.formats.split(",")
    table(f"{args.net} network, {h}x{w}", bare_model(h, w, args.net), h, w, args.rounds, formats, ImageNet=True)
    if args.ocr:
        oh, ow = (int(v) for v in args.ocr.split("x"))
        table(f"PP-OCRv4 det, {oh}x{ow}", ocr_detector(oh, ow), oh, ow, args.rounds, formats, ImageNet=False)
    if args.yolo:
        yh, yw = (int(v) for v in args.yolo.split("x"))
        table(f"YOLOv8n, {yh}x{yw}", yolo_detector(yh, yw), yh, yw, args.rounds, formats, ImageNet=False,
              mean_std=(0.0, 1.0))


def table(title: str, model: onnx.ModelProto, h: int, w: int, rounds: int, formats: list[str],
          ImageNet: bool, mean_std: tuple[float, float] = (0.5, 0.5)) -> None:  # noqa: N803
    rng = np.random.default_rng(0)
    mean, std = (MEAN, STD) if ImageNet else (np.full(3, mean_std[0], np.float32), np.full(3, mean_std[1], np.float32))

    def normalise(rgb_hwc: np.ndarray) -> np.ndarray:
        x = rgb_hwc.astype(np.float32) / 255.0
        return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1)[None])

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "bare.onnx"
        onnx.save(model, str(src))
        original = session(str(src))
        input_name = original.get_inputs()[0].name
        flags = ["--mean", ",".join(f"{v:g}" for v in mean), "--std", ",".join(f"{v:g}" for v in std),
                 "--scale", "255", "--no-verify", "-q"]
        folded = {}
        for fmt in formats:
            out = Path(tmp) / f"{fmt}.onnx"
            assert edgefold(["fold", str(src), "-o", str(out), "--pixel-format", fmt, *flags]) == 0
            folded[fmt] = session(str(out))
        frames = {"BayerRG8": rng.integers(0, 256, (h, w), dtype=np.uint8),
                  "NV12": rng.integers(16, 240, (h * 3 // 2, w), dtype=np.uint8),
                  "Mono12": rng.integers(0, 4096, (h, w)).astype(np.uint16)}
        today = {
            "BayerRG8": lambda f: normalise(cv2.cvtColor(f, cv2.COLOR_BayerBG2RGB)),  # sensor RGGB, OpenCV's name
            "NV12": lambda f: normalise(cv2.cvtColor(f, cv2.COLOR_YUV2RGB_NV12)),
            "Mono12": lambda f: normalise(np.repeat((f.astype(np.float32) * (255.0 / 4095.0))[..., None], 3, axis=2)),
        }
        camera = {
            "BayerRG8": lambda f: f[None, None],
            "NV12": lambda f: f[None, None],
            "Mono12": lambda f: f.astype(np.float32)[None, None],  # TensorRT/ORT take no uint16: one exact cast
        }
        print(f"\n{title}, onnxruntime CPU 1 thread, median of {rounds} interleaved rounds\n")
        print("| format | today: OpenCV/numpy + original (ms) | of which preprocessing | folded, camera buffer in (ms) | "
              "today / folded | bytes per frame into the model: today -> folded |")
        print("|---|---|---|---|---|---|")
        for fmt in formats:
            frame = frames[fmt]
            pre, total, fold_t = [], [], []
            for r in range(rounds + 1):
                t0 = time.perf_counter()
                x = today[fmt](frame)
                t1 = time.perf_counter()
                original.run(None, {input_name: x})
                t2 = time.perf_counter()
                folded[fmt].run(None, {input_name: camera[fmt](frame)})
                t3 = time.perf_counter()
                if r:  # the first round warms both up
                    pre.append(t1 - t0)
                    total.append(t2 - t0)
                    fold_t.append(t3 - t2)
            ratio = statistics.median(a / b for a, b in zip(total, fold_t))
            bytes_in = camera[fmt](frame).nbytes / (h * w)
            print(f"| {fmt} | {1e3 * statistics.median(total):.0f} | {1e3 * statistics.median(pre):.0f} | "
                  f"{1e3 * statistics.median(fold_t):.0f} | {ratio:.2f}x | 12 -> {bytes_in:g} B/px |", flush=True)


if __name__ == "__main__":
    main()
