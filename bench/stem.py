"""Stem benchmark: in-graph preprocessing + 3-channel first conv vs the folded single-channel conv.

Measured side by side in one process (this machine is noisy): every round runs each variant once, in
rotation, and the ratio is the median of the per-round ratios ``in-graph time / variant time``.
Variants: folded exact (static shapes), folded exact (dynamic H/W), folded ``--border approx``.

    python bench/stem.py                     # all stems x sizes x {1, 2} threads, markdown table
    python bench/stem.py --sizes 224x224 --threads 1 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

from edgefold.folding import FoldOptions, fold
from edgefold.graph.builder import ModelBuilder, gray_normalise

STEMS = {"resnet 7x7/s2 3->64": dict(k=7, stride=2, cout=64), "mobilenet 3x3/s2 3->32": dict(k=3, stride=2, cout=32)}


def stem_model(h, w, k, stride, cout) -> onnx.ModelProto:
    b = ModelBuilder(seed=0)
    x = b.input("image", [1, 1, h, w], np.uint8)
    y = b.conv(gray_normalise(b, x), 3, cout, k=k, stride=stride, name="stem")
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
    while r < rounds or (time.perf_counter() - start < budget_s and r < 10 * rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"image": x})
            times[name].append(time.perf_counter() - t0)
        r += 1
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="224x224,1024x1024,2048x2448")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per configuration after the minimum rounds")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    print(f"onnxruntime {ort.__version__}, CPU, graph optimisations on (default); ratio = in-graph / variant, "
          "median of per-round ratios")
    print("| stem | size | threads | in-graph ms | exact static | exact dynamic | approx | constants added |")
    print("|---|---|---|---|---|---|---|---|")
    for stem_name, cfg in STEMS.items():
        for h, w in sizes:
            static = stem_model(h, w, **cfg)
            dynamic = stem_model("h", "w", **cfg)
            exact_s, rep_s = fold(static, FoldOptions(verify=False))
            exact_d, _ = fold(dynamic, FoldOptions(verify=False))
            approx, _ = fold(static, FoldOptions(verify=False, border="approx"))
            added = sum(t.ByteSize() for t in exact_s.graph.initializer) - sum(
                t.ByteSize() for t in approx.graph.initializer)
            x = np.random.default_rng(0).integers(0, 256, (1, 1, h, w)).astype(np.uint8)
            for t in threads:
                sess = {"in-graph": session(static, t), "static": session(exact_s, t),
                        "dynamic": session(exact_d, t), "approx": session(approx, t)}
                times = measure(sess, x, args.rounds, args.budget)
                base = times["in-graph"]
                ratio = {k: statistics.median(b / v for b, v in zip(base, times[k]))
                         for k in ("static", "dynamic", "approx")}
                print(f"| {stem_name} | {h}x{w} | {t} | {1e3 * statistics.median(base):.2f} | {ratio['static']:.2f}x "
                      f"| {ratio['dynamic']:.2f}x | {ratio['approx']:.2f}x | {added / 1024:.1f} KB |", flush=True)
                del sess
    print(f"\nborder scheme used (static): {rep_s.convs[0][0].border_scheme}", file=sys.stderr)


if __name__ == "__main__":
    main()
