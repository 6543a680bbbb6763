"""Stem benchmark: in-graph preprocessing + 3-channel first conv vs the folded single-channel conv.

Measured side by side in one process (this machine is noisy): every round runs each variant once, the
order rotating from round to round, and the ratio is the median of the per-round ratios
``in-graph time / variant time``. Every session has the same options (onnxruntime CPU, default graph
optimisations, ``--threads`` intra-op threads). On a busy machine the original (the longest run) is the
likeliest to be preempted, which inflates every ratio of a round: the row "tiny conv / exact static, per
round" compares the two exact static forms directly, and "best" is the ratio of the fastest runs (what is
left when nothing preempted them).
Variants: the exact fold at a static size (the border scheme it chooses), the same with the tiny conv over the
whole output (the form before the strips, for comparison), the exact fold with dynamic H/W, and
``--border approx`` (no border term: the floor any exact form can reach).

Stems: the ResNet stem as torchvision has it (7x7/s2 conv 3->64, ReLU, 3x3/s2 max pool), the same conv alone
(its output a graph output: nothing follows it to join strips after), and a MobileNet 3x3/s2 conv alone.

    python bench/stem.py                     # ResNet stems at 224x224 and 1024x1024, 1 thread
    python bench/stem.py --stems all --sizes 224x224,1024x1024,2048x2448 --threads 1,2
"""
from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort

from edgefold.folding import FoldOptions, border, fold
from edgefold.graph.builder import ModelBuilder, gray_normalise

STEMS = {
    "resnet stem: 7x7/s2 conv 3->64, ReLU, 3x3/s2 max pool": dict(k=7, stride=2, cout=64, pool=True),
    "resnet 7x7/s2 conv 3->64 alone": dict(k=7, stride=2, cout=64, pool=False),
    "mobilenet 3x3/s2 conv 3->32 alone": dict(k=3, stride=2, cout=32, pool=False),
}
VARIANTS = ("exact static", "tiny conv over the frame", "exact dynamic", "approx")


def stem_model(h, w, k, stride, cout, pool) -> onnx.ModelProto:
    b = ModelBuilder(seed=0)
    x = b.input("image", [1, 1, h, w], np.uint8)
    y = b.conv(gray_normalise(b, x), 3, cout, k=k, stride=stride, name="stem")
    if pool:
        y = b.op("MaxPool", [b.op("Relu", [y])], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return b.model([y])


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def measure(sessions: dict[str, ort.InferenceSession], x: np.ndarray, rounds: int, budget_s: float):
    for s in sessions.values():
        s.run(None, {"image": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    start = time.perf_counter()
    r = 0
    names = list(sessions)
    while r < rounds or (time.perf_counter() - start < budget_s and r < 10 * rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each variant in each position in turn
            t0 = time.perf_counter()
            sessions[name].run(None, {"image": x})
            times[name].append(time.perf_counter() - t0)
        r += 1
    return times


def variants(h: int, w: int, cfg: dict) -> tuple[dict[str, onnx.ModelProto], str]:
    """The original and each folded variant, and the border scheme the exact static fold chose."""
    static = stem_model(h, w, **cfg)
    exact, report = fold(static, FoldOptions(verify=False))
    with mock.patch.object(border, "with_strips", lambda index, plan, options: plan):
        tiny, _ = fold(static, FoldOptions(verify=False))
    dynamic, _ = fold(stem_model("h", "w", **cfg), FoldOptions(verify=False))
    approx, _ = fold(static, FoldOptions(verify=False, border="approx"))
    models = {"in-graph": static, "exact static": exact, "tiny conv over the frame": tiny,
              "exact dynamic": dynamic, "approx": approx}
    r = report.convs[0][0]
    return models, f"{r.border_scheme}, MACs {r.macs_after / 1e6:.3g}M + {(r.macs_border or 0) / 1e6:.3g}M border"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stems", default="resnet", help="'resnet' (both ResNet rows) or 'all'")
    ap.add_argument("--sizes", default="224x224,1024x1024")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--budget", type=float, default=6.0, help="seconds per configuration after the minimum rounds")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    stems = {k: v for k, v in STEMS.items() if args.stems == "all" or k.startswith("resnet")}
    print(f"onnxruntime {ort.__version__}, CPU, graph optimisations on (default); ratio = in-graph / variant, "
          "median of per-round ratios, variants interleaved")
    cols = " | ".join(f"{h}x{w}" for h, w in sizes)
    for t in threads:
        print(f"\n{t} thread(s)\n\n| stem | variant | {cols} |\n|---|---|{'---|' * len(sizes)}")
        for stem_name, cfg in stems.items():
            rows = ("in-graph ms",) + VARIANTS + ("tiny conv / exact static, per round", "exact static form")
            cells: dict[str, list[str]] = {v: [] for v in rows}
            for h, w in sizes:
                models, form = variants(h, w, cfg)
                x = np.random.default_rng(0).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
                times = measure({k: session(m, t) for k, m in models.items()}, x, args.rounds, args.budget)
                base = times["in-graph"]
                cells["in-graph ms"].append(f"{1e3 * statistics.median(base):.2f}")
                for v in VARIANTS:
                    cells[v].append(f"{statistics.median(b / s for b, s in zip(base, times[v])):.2f}x "
                                    f"(best {min(base) / min(times[v]):.2f}x)")
                paired = statistics.median(t / e for t, e in zip(times["tiny conv over the frame"], times["exact static"]))
                cells["tiny conv / exact static, per round"].append(f"{paired:.2f}")
                cells["exact static form"].append(form)
            for v, row in cells.items():
                print(f"| {stem_name} | {v} | {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
