"""``edgefold demo``: the main job on the embedded default - make the demo model, fold it, verify it, run
both on a real gray photo and print what changed."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgefold.errors import EXIT_MISMATCH, EXIT_OK


def _median_ms(sess, x: np.ndarray, runs: int = 15) -> float:
    sess.run(None, {"image": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="fold the bundled demo model and run it on a sample gray photo",
                       description="Make the demo classifier (its graph preprocesses: uint8 -> Cast, x3, /255, -mean, "
                       "/std), fold it at the photo's resolution, verify it in onnxruntime, and run original and "
                       "folded side by side on scikit-image's camera photo. Files go to --out.")
    p.add_argument("--out", default="out/demo", help="folder for the demo files (default: out/demo)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import onnx

    from edgefold.backends.ort import session
    from edgefold.demo import demo_model, sample_image
    from edgefold.folding import FoldOptions, fold
    from edgefold.graph.builder import IMAGENET_MEAN, IMAGENET_STD
    from edgefold.graph.io import save_model, write_text_atomic

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    original_path, folded_path = out / "demo_classifier.onnx", out / "demo_classifier.folded.onnx"
    model = demo_model()
    save_model(model, original_path)
    frame, source = sample_image()
    # fold at the camera's resolution: the fastest exact border scheme (a dynamic model folds too)
    folded, report = fold(str(original_path), FoldOptions(input_size=(frame.shape[0], frame.shape[1])))
    save_model(folded, folded_path, source=original_path)
    write_text_atomic(out / "fold.json", report.dumps())
    print(f"demo model: {original_path} (preprocessing in the graph: Cast, x3, /255, -mean, /std), folded at "
          f"the camera resolution {frame.shape[0]}x{frame.shape[1]}")
    print(report.to_text())
    print(f"wrote {folded_path} and {out / 'fold.json'}")

    with_pre = onnx.load(str(original_path))
    s_orig, s_fold = session(with_pre, optimize=True), session(folded, optimize=True)
    x = frame[None, None]
    ref = s_orig.run(None, {"image": x})
    got = s_fold.run(None, {"image": x})
    t_orig, t_fold = _median_ms(s_orig, x), _median_ms(s_fold, x)
    # what users do today on the CPU: replicate, /255, -mean, /std, then a 3-channel float model
    rgb = (np.repeat(frame[None, None].astype(np.float32), 3, axis=1) / 255.0
           - IMAGENET_MEAN.reshape(1, 3, 1, 1)) / IMAGENET_STD.reshape(1, 3, 1, 1)
    print(f"\non {source}, {frame.shape[1]}x{frame.shape[0]}:")
    worst = 0.0
    for (o, r, g) in zip(s_orig.get_outputs(), ref, got):
        err = float(np.abs(r - g).max())
        worst = max(worst, err / max(float(np.abs(r).max()), 1e-12))
        print(f"  {o.name:14s} shape {list(r.shape)}  max |folded - original| = {err:.3g}  "
              f"(max |out| {np.abs(r).max():.3g})")
    print(f"  top-1 class: original {int(ref[0].argmax())}, folded {int(got[0].argmax())}")
    print(f"  input per frame: {rgb.nbytes:,} bytes (3 x float32, normalised on the CPU) -> {x.nbytes:,} bytes "
          f"(1 x uint8 raw pixels)")
    print(f"  onnxruntime CPU, whole model, median of 15: in-graph preprocessing {t_orig:.2f} ms, folded "
          f"{t_fold:.2f} ms (indicative; bench/stem.py measures the stem side by side)")
    return EXIT_OK if worst <= 1e-4 else EXIT_MISMATCH
