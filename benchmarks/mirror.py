"""What mirror averaging costs (engine/queries.py: the volume is also segmented mirrored left-right, sides swapped).

    python benchmarks/mirror.py                        # the MNI152 brain, 3 runs, auto precision and float32
    python benchmarks/mirror.py --runs 5 --precision float32

For each precision: a first prompt ("left hippocampus", three views, a fresh Segmenter: loading the model, the head
pose, encoding what the prompt needs) and a further prompt on the same volume ("right putamen", decoded from the cached
embeddings), with mirror averaging (``mirror=True``, the default for models whose card asks for it) and without
(``mirror=False``, the naive path); and the background preparation the Slicer module runs on selecting a volume
(``precompute``: every slice of the three planes, and of the mirror's axial and coronal planes with mirror averaging),
then the first prompt. Medians over ``--runs`` calls and the ratio of the two.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.volume import brain_volume, default_model  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto,float32", help="comma-separated: auto, float32, bfloat16")
    args = parser.parse_args()
    from TextSegmentLib.engine import Segmenter

    model = default_model()
    brain = brain_volume()
    rows = []
    for precision in [p.strip() for p in args.precision.split(",") if p.strip()]:
        times = {}
        for mirror in (True, False):
            first, further, prepare, after = [], [], [], []
            for _ in range(args.runs):
                seg = Segmenter(model, device="cpu", precision=precision)
                first.append(timed(lambda seg=seg, m=mirror: seg.segment(brain, ["left hippocampus"], mirror=m)))
                further.append(timed(lambda seg=seg, m=mirror: seg.segment(brain, ["right putamen"], mirror=m)))
                seg = Segmenter(model, device="cpu", precision=precision)
                seg.model.card = dict(seg.card, input=dict(seg.card.get("input", {}), mirror=mirror))
                prepare.append(timed(lambda seg=seg: seg.precompute(brain)))
                after.append(timed(lambda seg=seg, m=mirror: seg.segment(brain, ["left hippocampus"], mirror=m)))
            times[mirror] = tuple(statistics.median(t) for t in (first, further, prepare, after))
        rows.append((precision, times))
    print(f"MNI152 T1 (197 x 233 x 189), three views, medians of {args.runs} runs")
    print("| precision | prompt | mirror averaging (default) | without (naive) | ratio |")
    print("|---|---|---|---|---|")
    for precision, times in rows:
        for i, what in enumerate(("first prompt", "further prompt", "background preparation", "then first prompt")):
            on, off = times[True][i], times[False][i]
            print(f"| {precision} | {what} | {on:.2f} s | {off:.2f} s | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
