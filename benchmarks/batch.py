"""Whole-volume prompt time against the number of slices per model batch (the Segmenter's ``batch_size``).

    python benchmarks/batch.py                         # brain MRI, three views, batches of 2, 4, 8, 16, 32
    python benchmarks/batch.py --views 1 --sizes 2,16 --runs 5

For each batch size: a first prompt on a fresh Segmenter ("left hippocampus": encodes the slices it decodes) and
further prompts on the cached embeddings (four structures in turn); medians over ``--runs`` (first) and
``2 * --runs`` (further) calls, and each time over the time at the default batch size (16) measured in the same run.
On 2 CPU cores a batch costs a few tens of milliseconds, so cancel (checked between batches) stays prompt.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.volume import brain_volume, default_model  # noqa: E402

FURTHER = ("right putamen", "left caudate", "right thalamus", "left putamen")
DEFAULT = 16


def measure(model, image, views, batch: int, runs: int):
    """Median first and further prompt seconds at ``batch`` slices per batch."""
    from TextSegmentLib.engine import Segmenter

    firsts, further = [], []
    for _ in range(runs):
        seg = Segmenter(model, device="cpu", batch_size=batch)
        t = time.perf_counter()
        seg.segment(image, ["left hippocampus"], views=views)
        firsts.append(time.perf_counter() - t)
        for prompt in FURTHER[:2]:
            t = time.perf_counter()
            seg.segment(image, [prompt], views=views)
            further.append(time.perf_counter() - t)
    return statistics.median(firsts), statistics.median(further)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_model()), help="bundle folder (default: the embedded model)")
    parser.add_argument("--views", type=int, choices=(1, 3), default=3)
    parser.add_argument("--sizes", default="2,4,8,16,32", help="comma-separated batch sizes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    import torch

    from TextSegmentLib.checkpoint import load_bundle

    torch.set_num_threads(args.threads)
    model = load_bundle(Path(args.model), torch.device("cpu")).requires_grad_(False)
    model.encode_text(["left hippocampus", *FURTHER])  # the text encoder loads once, outside the timings
    image = brain_volume()
    views = ("axial", "coronal", "sagittal") if args.views == 3 else ("axial",)
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {DEFAULT})
    times = {b: measure(model, image, views, b, args.runs) for b in sizes}
    base = times[DEFAULT]
    size = "x".join(map(str, image.GetSize()))
    print(f"brain {size}, {args.views} view(s), {args.threads} threads, {args.runs} runs")
    print(f"| batch | first s | first / batch {DEFAULT} | further s | further / batch {DEFAULT} |")
    print("|---|---|---|---|---|")
    for b in sizes:
        first, further = times[b]
        print(f"| {b} | {first:.3f} | {first / base[0]:.2f} | {further:.3f} | {further / base[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
