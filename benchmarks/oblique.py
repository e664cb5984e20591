"""What conforming an oblique grid costs (engine/volume.py, imaging/conform.py, engine/rebase.py).

    python benchmarks/oblique.py                        # the benchmark brain on a grid tilted 15 degrees, 3 runs
    python benchmarks/oblique.py --runs 5 --precision float32 --degrees 20

For each precision, on the brain resampled onto a grid tilted about the head-foot axis: a first prompt ("left
putamen", three views, a fresh Segmenter: loading the model, the head pose, the resampling onto the anatomical axes
and back, encoding) and the first refinement of it (a box around the segment on its fullest axial slice of the input:
carrying the result onto the input's own grid, then the refinement), conformed (the default) and read on the
nearest axes (``conform_oblique=False``, the naive path). Medians over ``--runs`` and the ratio of the two.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.volume import brain_volume, default_model  # noqa: E402


def run_once(model, image, conform: bool, precision: str):
    from TextSegmentLib.engine import Segmenter

    seg = Segmenter(str(model), device="cpu", precision=precision, conform_oblique=conform)
    t0 = time.perf_counter()
    result = seg.segment(image, ["left putamen"])
    first = time.perf_counter() - t0
    mask = result.mask(0)
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    rows, cols = np.nonzero(mask[k])
    box = ((int(cols.min()), int(rows.min()), k), (int(cols.max()), int(rows.max()), k))
    t0 = time.perf_counter()
    seg.refine(result, 0, k, box=box, plane="axial")
    return first, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--degrees", type=float, default=15.0)
    parser.add_argument("--precision", default="auto,float32", help="comma-separated: auto, float32, bfloat16")
    args = parser.parse_args()
    from training.robustness_edges import oblique_grid

    model = default_model()
    image = oblique_grid(brain_volume(), args.degrees)
    print(f"brain on a grid tilted {args.degrees:g} degrees, {args.runs} runs, medians")
    print("| precision | step | conformed (default) | nearest axes (`conform_oblique=False`) | ratio |")
    print("|---|---|---|---|---|")
    for precision in args.precision.split(","):
        times = {c: [run_once(model, image, c, precision) for _ in range(args.runs)] for c in (True, False)}
        for i, step in enumerate(("first prompt", "first refinement")):
            a = statistics.median(t[i] for t in times[True])
            b = statistics.median(t[i] for t in times[False])
            print(f"| {precision} | {step} | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
