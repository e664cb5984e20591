"""Simulated-user refinement benchmark (the protocol of nnInteractive and SAM-Med3D), through the public API.

    python benchmarks/interactive.py                        # validation variants of the training subject (Colin27)
    python benchmarks/interactive.py --volumes heldout      # the held-out MNI152 (report only, never tune on it)
    python benchmarks/interactive.py --precision float32    # the model work in float32 instead of the default
    python benchmarks/interactive.py --threads 1            # one torch thread (a machine shared with other work)

For every structure, starting from the text result ("segment" with the eight deep grey prompts, three views) and
separately in each of the three planes (axial, coronal, sagittal):

1. interaction 1: a box on the worst slice of the error in that plane (the slice holding the reference with the
   most wrong voxels), drawn as the reference's extent on that slice (``Segmenter.refine(box=...)``);
2. interactions 2..5: one click at the centre of the largest 3D error region (the voxel farthest from its edge),
   + where the region is missed reference, - where it is a false positive, on that voxel's slice of the plane.

Reported per structure: the 3D Dice after 0, 1, 3 and 5 interactions (mean over the three planes) and the median
time of one interaction (one ``refine`` call on cached embeddings). After each sequence every refinement is undone
and the segment must come back bit-exact (checked).

Volumes: ``validation`` = variants of the training subject (Colin27 T1 with its AAL labels, Debian mricron-data)
made with ``training/robustness.py``'s transforms: a bias field, a T2-like contrast, a 12 % smaller head and a
15-degree nodding tilt. ``heldout`` = the MNI152-2009 T1 from nilearn with the AAL labels carried onto its grid
(``training/heldout.py``).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
AAL = "/usr/share/mricron/templates/aal.nii.gz"
PLANES = ("axial", "coronal", "sagittal")
AFTER = (0, 1, 3, 5)
VERBOSE = False
STRUCTURES: List[str] = []


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def validation_volumes() -> Dict[str, Tuple[sitk.Image, np.ndarray]]:
    """{name: (image, AAL labels on its grid (k, j, i))} for the variants of the training subject."""
    from training.robustness import _affine_about_centre, _rotation, contrast_variants

    ch2 = sitk.ReadImage(CH2)
    labels = sitk.ReadImage(AAL)
    labels = sitk.Resample(labels, ch2, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    contrasts = contrast_variants(ch2)
    out = {name: (contrasts[name], sitk.GetArrayFromImage(labels)) for name in ("bias field", "T2-like")}
    for name, matrix in (("head 12 % smaller", np.eye(3) * 0.88), ("tilted 15 deg (nodding)", _rotation(0, 15))):
        t = _affine_about_centre(ch2, matrix)
        image = sitk.Resample(ch2, ch2, t, sitk.sitkLinear, 0.0, ch2.GetPixelID())
        ref = sitk.Resample(labels, ch2, t, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
        out[name] = (image, sitk.GetArrayFromImage(ref))
    return out


def heldout_volumes() -> Dict[str, Tuple[sitk.Image, np.ndarray]]:
    from TextSegmentLib.demo import demo_volume
    from training.heldout import reference_labels

    mni = sitk.ReadImage(str(demo_volume()))
    return {"MNI152 (held-out)": (mni, reference_labels(mni))}


def worst_box(pred: np.ndarray, ref: np.ndarray, axis: int) -> Tuple[tuple, tuple]:
    """Box corners (i, j, k) of the reference's extent on the slice (numpy ``axis``) with the most wrong voxels
    among those holding the reference."""
    other = tuple(a for a in range(3) if a != axis)
    errors = (pred != ref).sum(axis=other)
    present = ref.any(axis=other)
    s = int(np.argmax(np.where(present, errors, -1)))
    plane = np.take(ref, s, axis=axis)
    rows, cols = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
    lo, hi = [0, 0, 0], [0, 0, 0]  # numpy (k, j, i) order first
    lo[axis] = hi[axis] = s
    lo[other[0]], hi[other[0]] = int(rows[0]), int(rows[-1])
    lo[other[1]], hi[other[1]] = int(cols[0]), int(cols[-1])
    return tuple(lo[::-1]), tuple(hi[::-1])  # (i, j, k)


def error_click(pred: np.ndarray, ref: np.ndarray) -> Tuple[tuple, int]:
    """The centre (voxel farthest from its edge) of the largest 3D error region, (i, j, k), and 1 (missed) or 0
    (false positive)."""
    best = None
    for label, err in ((1, ref & ~pred), (0, pred & ~ref)):
        comps, n = ndimage.label(err)
        if n == 0:
            continue
        sizes = np.bincount(comps.ravel())[1:]
        if best is None or sizes.max() > best[0]:
            best = (int(sizes.max()), comps == (int(np.argmax(sizes)) + 1), label)
    if best is None:
        return None, 1  # type: ignore[return-value]
    region = best[1]
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1, 1:-1]
    k, j, i = np.unravel_index(int(np.argmax(depth)), region.shape)
    return (int(i), int(j), int(k)), best[2]


def crop_box(ref: np.ndarray, pred: np.ndarray, margin: int = 12) -> Tuple[slice, ...]:
    """Where the errors can be: around the reference and the prediction (speeds up the error analysis)."""
    both = ref | pred
    idx = [np.flatnonzero(both.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    return tuple(slice(max(0, int(x[0]) - margin), int(x[-1]) + margin + 1) for x in idx)


def run_structure(seg, result, index: int, ref: np.ndarray, plane: str, steps: int) -> Tuple[List[float], List[float]]:
    """Dice after 0..steps interactions in ``plane`` and the seconds of each interaction; undoes them all."""
    volume = result.volume
    from TextSegmentLib.engine.volume import AXIS_NORMAL

    axis = 2 - volume.reorientation.permutation[AXIS_NORMAL[plane]]  # numpy axis of the plane's normal
    start = result.mask(index)
    dices, seconds = [dice(start, ref)], []
    pred = start
    for step in range(steps):
        region = crop_box(ref, pred)
        offset = np.array([r.start for r in region][::-1])  # (i, j, k)
        t0 = time.perf_counter()
        if step == 0:
            lo, hi = worst_box(pred[region], ref[region], axis)
            lo, hi = tuple(int(v) for v in np.add(lo, offset)), tuple(int(v) for v in np.add(hi, offset))
            t0 = time.perf_counter()
            seg.refine(result, index, lo, box=(lo, hi), plane=plane)
        else:
            voxel, label = error_click(pred[region], ref[region])
            if voxel is None:
                dices.append(dices[-1])
                continue
            voxel = tuple(int(v) for v in np.add(voxel, offset))
            t0 = time.perf_counter()
            seg.refine(result, index, voxel, points=[voxel], labels=[label], plane=plane)
        seconds.append(time.perf_counter() - t0)
        pred = result.mask(index)
        dices.append(dice(pred, ref))
        if VERBOSE:
            print(f"  {result.states[index].prompt} {plane} {step + 1}: {seconds[-1]:.3f} s Dice {dices[-1]:.3f}")
    for _ in seconds:
        seg.undo(result)
    if not np.array_equal(result.mask(index), start):
        raise AssertionError(f"undo did not restore {result.states[index].prompt} exactly")
    return dices, seconds


def evaluate(seg, name: str, image: sitk.Image, labels: np.ndarray, steps: int) -> Dict[str, Dict]:
    from training.heldout import DEEP_GREY

    prompts = [p for p in DEEP_GREY if not STRUCTURES or p in STRUCTURES]
    t0 = time.perf_counter()
    result = seg.segment(image, prompts, views=PLANES)
    print(f"{name}: text result in {time.perf_counter() - t0:.1f} s", flush=True)
    out: Dict[str, Dict] = {}
    for index, prompt in enumerate(prompts):
        ref = np.isin(labels, DEEP_GREY[prompt])
        per_plane = {plane: run_structure(seg, result, index, ref, plane, steps) for plane in PLANES}
        out[prompt] = per_plane
    return out


def table(rows: Dict[str, Dict[str, Dict]], steps: int) -> str:
    """Markdown table: per structure (over volumes and planes) the mean Dice after 0/1/3/5 interactions."""
    after = [a for a in AFTER if a <= steps]
    lines = [
        "| structure | " + " | ".join(f"Dice after {a}" for a in after) + " | worst change after 1 | median s |",
        "|---" * (len(after) + 3) + "|",
    ]
    per_structure: Dict[str, List] = {}
    for volume in rows.values():
        for prompt, planes in volume.items():
            per_structure.setdefault(prompt, []).extend(planes.values())
    times: List[float] = []
    means = {a: [] for a in after}
    for prompt, runs in per_structure.items():
        values = [statistics.mean(d[a] for d, _ in runs) for a in after]
        worst = min(d[1] - d[0] for d, _ in runs) if steps else 0.0
        secs = [t for _, ts in runs for t in ts]
        times += secs
        for a, v in zip(after, values):
            means[a].append(v)
        median = statistics.median(secs) if secs else 0.0
        lines.append(f"| {prompt} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {worst:+.3f} | {median:.3f} |")
    mean_values = " | ".join(f"**{statistics.mean(means[a]):.3f}**" for a in after)
    median_all = statistics.median(times) if times else 0.0
    lines.append(f"| **mean** | {mean_values} | | **{median_all:.3f}** |")
    return "\n".join(lines)


def plane_table(rows: Dict[str, Dict[str, Dict]], steps: int) -> str:
    after = [a for a in AFTER if a <= steps]
    lines = ["| plane | " + " | ".join(f"Dice after {a}" for a in after) + " |", "|---" * (len(after) + 1) + "|"]
    for plane in PLANES:
        runs = [planes[plane] for volume in rows.values() for planes in volume.values()]
        lines.append(
            f"| {plane} | " + " | ".join(f"{statistics.mean(d[a] for d, _ in runs):.3f}" for a in after) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", choices=("validation", "heldout"), default="validation")
    parser.add_argument("--model", default=None, help="bundle folder (default: the embedded default model)")
    parser.add_argument("--precision", default="auto", help="auto, float32 or bfloat16 (as benchmarks/volume.py)")
    parser.add_argument("--steps", type=int, default=5, help="interactions per structure and plane (default 5)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N volumes (0: all)")
    parser.add_argument("--structures", default="", help="comma-separated prompts (default: the eight deep grey)")
    parser.add_argument("--verbose", action="store_true", help="print every interaction")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the 2-core target)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, args.threads))
    global VERBOSE
    VERBOSE = args.verbose
    STRUCTURES.extend(p.strip() for p in args.structures.split(",") if p.strip())

    from benchmarks.volume import default_model
    from TextSegmentLib.engine import Segmenter

    seg = Segmenter(str(args.model or default_model()), device="cpu", precision=args.precision)
    volumes = validation_volumes() if args.volumes == "validation" else heldout_volumes()
    if args.limit:
        volumes = dict(list(volumes.items())[: args.limit])
    rows = {}
    for name, (image, labels) in volumes.items():
        rows[name] = evaluate(seg, name, image, labels, args.steps)
        print(table({name: rows[name]}, args.steps), flush=True)
    print(
        f"\nAll {args.volumes} volumes ({len(rows)}: {', '.join(rows)}), precision {seg.dtype}, "
        f"{torch.get_num_threads()} threads, mean over planes:"
    )
    print(table(rows, args.steps))
    print()
    print(plane_table(rows, args.steps))


if __name__ == "__main__":
    main()
