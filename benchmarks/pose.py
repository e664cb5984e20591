"""What finding the head pose costs a first prompt (imaging/pose.py).

    python benchmarks/pose.py              # the MNI152 brain straight and turned by 30 degrees, 3 runs each
    python benchmarks/pose.py --runs 5 --precision float32

For each volume: the pose estimate alone, and a first prompt ("left hippocampus", three views, a fresh Segmenter) with
the head aligned (the default) and without (``align_head=False``, the naive path); medians over ``--runs`` calls and
the ratio of the two first prompts. The straight brain is not resampled (the pose is only estimated); the turned one
is resampled onto the head's axes and its masks carried back.
"""

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.volume import brain_volume, default_model  # noqa: E402


def turned(image, degrees: float):
    import SimpleITK as sitk

    from TextSegmentLib.imaging.pose import centre

    transform = sitk.Euler3DTransform(centre(image), math.radians(degrees), 0.0, 0.0)
    low = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.Resample(image, image, transform.GetInverse(), sitk.sitkLinear, low)


def median_seconds(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    args = parser.parse_args()
    from TextSegmentLib.engine import Segmenter
    from TextSegmentLib.imaging.pose import estimate_head_pose

    model = default_model()
    brain = brain_volume()
    rows = []
    for name, image in (("MNI152 straight", brain), ("MNI152 turned 30 deg", turned(brain, 30.0))):
        pose = estimate_head_pose(image)
        alone = median_seconds(lambda image=image: estimate_head_pose(image), args.runs)
        firsts = {}
        for align in (True, False):

            def first(image=image, align=align):
                seg = Segmenter(model, device="cpu", precision=args.precision, align_head=align)
                seg.segment(image, ["left hippocampus"])

            firsts[align] = median_seconds(first, args.runs)
        rows.append((name, pose.degrees, pose.turned, alone, firsts[True], firsts[False]))
    print(f"precision {args.precision}, medians of {args.runs} runs")
    print("| volume | pose found | pose alone | first prompt, aligned (default) | without | ratio |")
    print("|---|---|---|---|---|---|")
    for name, degrees, aligned, alone, with_pose, without in rows:
        state = f"{degrees:.1f} deg, {'aligned' if aligned else 'left on its grid'}"
        ratio = with_pose / without
        print(f"| {name} | {state} | {alone:.2f} s | {with_pose:.2f} s | {without:.2f} s | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
