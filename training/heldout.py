"""Held-out accuracy report of a brain model on the MNI152-2009 T1, through the command line.

The MNI152 template ships with nilearn and is never used in training. The AAL labels (defined on Colin27 in MNI
space) are carried onto its grid by nearest-neighbour resampling in physical (MNI) space; the brain mask comes with
nilearn. Every prediction is made by ``python -m TextSegmentLib segment`` (a subprocess, as a user would run it) with
held-out phrasings. Reported: per-structure 3D Dice and NSD at 2 mm, left/right confusion, abdominal prompts that
must come back "not found", Dice versus prompt length (1-3, 10-12, 25-30, 50-60 words), the same volume stored in
other orientations (voxel-exact comparison after mapping), and CPU timings.

Run:  .venv/bin/python -m training.heldout --model TextSegmentLib/resources/models/<id> --out training/runs/heldout
"""

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from TextSegmentLib.demo import demo_volume

from .metrics import dice, nsd

AAL = "/usr/share/mricron/templates/aal.nii.gz"
DEEP_GREY = {  # prompt name -> AAL values
    "left hippocampus": [37],
    "right hippocampus": [38],
    "left putamen": [73],
    "right putamen": [74],
    "left caudate nucleus": [71],
    "right caudate nucleus": [72],
    "left thalamus": [77],
    "right thalamus": [78],
}
OTHER_GREY = {
    "left amygdala": [41],
    "right amygdala": [42],
    "left globus pallidus": [75],
    "right globus pallidus": [76],
}
CEREBELLUM = list(range(91, 117))
ABSENT = ["liver", "spleen", "left kidney", "pancreas", "urinary bladder", "heart"]
HELDOUT_TEMPLATE = "I am looking for the {name}"
LENGTH_PROMPTS = {
    "1-3": "{name}",
    "10-12": "please segment the {name} on this T1 weighted brain MRI scan",
    "25-30": (
        "in this T1 weighted magnetic resonance image of an adult human head, I would like you to find and "
        "carefully outline the {name}, including all of its extent across slices"
    ),
    "50-60": (
        "this is a T1 weighted magnetic resonance image of the head of a healthy adult volunteer acquired for "
        "research; the grey and white matter are well contrasted and there is no visible lesion; please find the "
        "{name} and delineate it carefully on every slice where it appears, following its boundary with the "
        "neighbouring structures and excluding the cerebrospinal fluid around it"
    ),
}


def reference_labels(mni: sitk.Image) -> np.ndarray:
    """AAL labels on the MNI152 grid (nearest neighbour, physical space), SimpleITK (k, j, i) order."""
    aal = sitk.ReadImage(AAL)
    return sitk.GetArrayFromImage(sitk.Resample(aal, mni, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def reference_masks(mni: sitk.Image) -> Dict[str, np.ndarray]:
    labels = reference_labels(mni)
    refs = {name: np.isin(labels, values) for name, values in {**DEEP_GREY, **OTHER_GREY}.items()}
    refs["cerebellum"] = np.isin(labels, CEREBELLUM)
    refs["brain"] = sitk.GetArrayFromImage(mni) > 0  # the template is skull-stripped: brain = non-zero voxels
    return refs


def run_cli(
    model: str, image: Path, prompts: Sequence[str], output: Path, device: str, extra: Sequence[str] = ()
) -> Tuple[List[Dict], float]:
    """One ``segment`` call (``extra``: more options); returns the report's segments and the wall time in seconds."""
    cmd = [sys.executable, "-m", "TextSegmentLib", "segment", str(image), "--output", str(output), "--model", model]
    cmd += ["--device", device, "--overwrite", "--no-progress", *extra]
    for p in prompts:
        cmd += ["--prompt", p]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"segment failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(Path(str(output) + ".json").read_text())
    return report["segments"], seconds


def predicted(output: Path, label: int) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(output))) == label


def store_reoriented(mni: sitk.Image, kind: str, path: Path) -> None:
    """Write the same volume with another voxel order; the physical position of every voxel is unchanged."""
    if kind == "LPS":  # flip i and j so the direction becomes the identity
        flipped = sitk.Flip(mni, [True, True, False])
        sitk.WriteImage(flipped, str(path))
        return
    if kind == "permuted":  # store sagittal-first: new index axes (j, k, i) of the old ones
        out = sitk.PermuteAxes(mni, [1, 2, 0])
        sitk.WriteImage(out, str(path))
        return
    raise ValueError(kind)


def back_to_grid(pred_path: Path, grid: sitk.Image) -> np.ndarray:
    """Labels of a prediction stored in another orientation, on ``grid`` (exact: same voxel centres)."""
    pred = sitk.ReadImage(str(pred_path))
    return sitk.GetArrayFromImage(sitk.Resample(pred, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def evaluate(model: str, out: Path, device: str = "cpu", precision: str = "auto") -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    source = demo_volume()
    mni = sitk.ReadImage(str(source))
    spacing = mni.GetSpacing()[::-1]
    refs = reference_masks(mni)
    rows: List[Dict] = []
    timings: Dict[str, float] = {}

    def score(
        group: str, names: Sequence[str], template: str = HELDOUT_TEMPLATE, tag: str = "", extra: Sequence[str] = ()
    ) -> List[Dict]:
        prompts = [template.format(name=n) for n in names]
        output = out / f"{group}{tag}.nii.gz"
        segments, seconds = run_cli(model, source, prompts, output, device, [*extra, "--precision", precision])
        timings[f"{group}{tag}"] = seconds
        found_rows = []
        for name, prompt, seg in zip(names, prompts, segments):
            pred = predicted(output, seg["label"])
            ref = refs[name]
            row = {
                "structure": name,
                "prompt": prompt,
                "group": group + tag,
                "found": seg["found"],
                "confidence": round(seg["confidence"], 3),
                "dice": round(dice(pred, ref), 4),
                "nsd_2mm": round(nsd(pred, ref, spacing), 4),
                "pred_ml": round(seg["volume_ml"], 2),
                "ref_ml": round(float(ref.sum()) * float(np.prod(spacing)) / 1000, 2),
            }
            if name.startswith(("left ", "right ")):
                other = ("right " + name[5:]) if name.startswith("left ") else ("left " + name[6:])
                row["dice_other_side"] = round(dice(pred, refs[other]), 4)
                row["lr_swap"] = row["dice_other_side"] > row["dice"]
            found_rows.append(row)
        return found_rows

    rows += score("deep_grey", list(DEEP_GREY) + list(OTHER_GREY))
    # the same call with the axial view only: is fusing three views at least as good, structure by structure?
    for r in score("deep_grey", list(DEEP_GREY) + list(OTHER_GREY), tag="_axial", extra=["--views", "axial"]):
        main_row = next(m for m in rows if m["structure"] == r["structure"])
        main_row["dice_axial_only"], main_row["nsd_2mm_axial_only"] = r["dice"], r["nsd_2mm"]
    rows += score("brain", ["brain"])
    rows += score("cerebellum", ["cerebellum"])
    absent_segments, seconds = run_cli(model, source, ABSENT, out / "absent.nii.gz", device)
    timings["absent"] = seconds
    absent = [
        {
            "prompt": p,
            "found": s["found"],
            "confidence": round(s["confidence"], 3),
            "volume_ml": round(s["volume_ml"], 2),
        }
        for p, s in zip(ABSENT, absent_segments)
    ]

    length_rows = []
    for bucket, template in LENGTH_PROMPTS.items():
        words = len(template.format(name="left hippocampus").split())
        for r in score("length", list(DEEP_GREY), template=template, tag=f"_{bucket}"):
            length_rows.append({**r, "bucket": bucket, "words": words})

    orientation_rows = []
    base = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "deep_grey.nii.gz")))
    for kind in ("LPS", "permuted"):
        path = out / f"mni152_{kind}.nii.gz"
        store_reoriented(mni, kind, path)
        prompts = [HELDOUT_TEMPLATE.format(name=n) for n in list(DEEP_GREY) + list(OTHER_GREY)]
        pred_path = out / f"deep_grey_{kind}.nii.gz"
        _, seconds = run_cli(model, path, prompts, pred_path, device)
        timings[f"orientation_{kind}"] = seconds
        other = back_to_grid(pred_path, mni)
        orientation_rows.append(
            {
                "stored_as": kind,
                "differing_voxels": int((other != base).sum()),
                "labelled_voxels": int((base > 0).sum()),
            }
        )

    summary = {
        "model": model,
        "image": source.name,
        "device": device,
        "precision": precision,
        "mean_dice_deep_grey_8": round(float(np.mean([r["dice"] for r in rows if r["structure"] in DEEP_GREY])), 4),
        "mean_nsd_deep_grey_8": round(float(np.mean([r["nsd_2mm"] for r in rows if r["structure"] in DEEP_GREY])), 4),
        "lr_swaps": [r["structure"] for r in rows if r.get("lr_swap")],
        "absent_reported_found": [a["prompt"] for a in absent if a["found"]],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "structures": rows,
        "absent": absent,
        "prompt_length": length_rows,
        "orientations": orientation_rows,
    }
    (out / "heldout.json").write_text(json.dumps(summary, indent=2))
    with open(out / "heldout.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    (out / "heldout.md").write_text(markdown(summary))
    plot(summary, out / "heldout.png")
    return summary


def markdown(s: Dict) -> str:
    lines = [
        f"Held-out image: `{s['image']}` (MNI152-2009 T1, never trained on); AAL labels carried over in MNI space.",
        f'Prompts: held-out phrasing "{HELDOUT_TEMPLATE}". Device: {s["device"]}, '
        f"precision {s.get('precision', 'auto')}.",
        "",
        f"**Mean Dice over the eight deep grey structures: {s['mean_dice_deep_grey_8']:.3f}** "
        f"(NSD at 2 mm {s['mean_nsd_deep_grey_8']:.3f}).",
        "",
        "| structure | found | confidence | Dice | NSD 2 mm | Dice with the other side | predicted mL | reference mL "
        "| Dice, axial view only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def num(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.3f}"

    for r in s["structures"]:
        lines.append(
            f"| {r['structure']} | {'yes' if r['found'] else 'no'} | {r['confidence']:.2f} | {r['dice']:.3f} "
            f"| {r['nsd_2mm']:.3f} | {num(r.get('dice_other_side'))} | {r['pred_ml']:.1f} "
            f"| {r['ref_ml']:.1f} | {num(r.get('dice_axial_only'))} |"
        )
    lines += ["", f"Left/right swaps (prediction overlaps the other side more): {s['lr_swaps'] or 'none'}.", ""]
    lines += [
        'Structures that are not in a brain MRI (must be "not found"):',
        "",
        "| prompt | found | confidence | volume mL |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {a['prompt']} | {'yes' if a['found'] else 'no'} | {a['confidence']:.2f} | {a['volume_ml']:.1f} |"
        for a in s["absent"]
    ]
    lines += [
        "",
        "Dice versus prompt length (mean over the eight deep grey structures):",
        "",
        "| words | Dice | NSD 2 mm |",
        "|---|---|---|",
    ]
    for bucket in LENGTH_PROMPTS:
        rs = [r for r in s["prompt_length"] if r["bucket"] == bucket]
        lines.append(
            f"| {bucket} | {np.mean([r['dice'] for r in rs]):.3f} | {np.mean([r['nsd_2mm'] for r in rs]):.3f} |"
        )
    lines += [
        "",
        "Same volume stored in other orientations (labels compared voxel by voxel after mapping back):",
        "",
        "| stored as | differing voxels | labelled voxels |",
        "|---|---|---|",
    ]
    lines += [f"| {o['stored_as']} | {o['differing_voxels']} | {o['labelled_voxels']} |" for o in s["orientations"]]
    lines += [
        "",
        "CPU wall time per command-line call (model load + all prompts), seconds:",
        "",
        "| call | seconds |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in s["timings_s"].items()]
    return "\n".join(lines) + "\n"


def plot(s: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s["structures"]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    axes[0].bar(x - 0.2, [r["dice"] for r in rows], 0.4, label="Dice")
    axes[0].bar(x + 0.2, [r["nsd_2mm"] for r in rows], 0.4, label="NSD 2 mm")
    axes[0].set_xticks(x, [r["structure"] for r in rows], rotation=40, ha="right")
    axes[0].set_ylim(0, 1)
    axes[0].axhline(0.6, color="gray", ls=":", lw=1)
    axes[0].legend()
    axes[0].set_title("Held-out MNI152 T1: per structure")
    buckets = list(LENGTH_PROMPTS)
    axes[1].plot(buckets, [np.mean([r["dice"] for r in s["prompt_length"] if r["bucket"] == b]) for b in buckets], "o-")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("prompt length (words)")
    axes[1].set_title("Deep grey Dice vs prompt length")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Held-out MNI152 accuracy report through the command line")
    parser.add_argument("--model", required=True, help="bundle folder or catalog id")
    parser.add_argument("--out", default="training/runs/heldout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="the engine's precision (auto, float32, bfloat16)")
    args = parser.parse_args(argv)
    summary = evaluate(args.model, Path(args.out), args.device, args.precision)
    print((Path(args.out) / "heldout.md").read_text())
    print(f"mean Dice deep grey: {summary['mean_dice_deep_grey_8']}")


if __name__ == "__main__":
    main()
