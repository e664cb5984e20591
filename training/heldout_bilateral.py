"""Held-out check of unsided and bilateral prompts (both sides as one segment) on the MNI152-2009 T1.

For the four paired deep grey structures (putamen, caudate, thalamus, hippocampus) the prompts name no side, say
"bilateral"/"both" or use the plural; each must come back as both sides together. Reported: 3D Dice against the
union of the left and right AAL labels, the left/right split of the segment, and how the prompt was read. The
MNI152 template is for reporting only: nothing is chosen on it.

Run:  .venv/bin/python -m training.heldout_bilateral --out training/runs/heldout_bilateral
"""

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from TextSegmentLib.app import open_segmenter, segment_case
from TextSegmentLib.demo import demo_volume

from .heldout import DEEP_GREY, reference_masks
from .metrics import dice

PROMPTS = {  # prompt -> the two AAL structures it means together
    "putamen": ("left putamen", "right putamen"),
    "bilateral putamen": ("left putamen", "right putamen"),
    "caudate": ("left caudate nucleus", "right caudate nucleus"),
    "both caudate nuclei": ("left caudate nucleus", "right caudate nucleus"),
    "thalamus": ("left thalamus", "right thalamus"),
    "thalami": ("left thalamus", "right thalamus"),
    "hippocampus": ("left hippocampus", "right hippocampus"),
    "both hippocampi": ("left hippocampus", "right hippocampus"),
}


def evaluate(model: str = "default", device: str = "cpu") -> Dict:
    """Segment every prompt of :data:`PROMPTS` on the MNI152 T1 (one call: shared parts are decoded once)."""
    mni = sitk.ReadImage(str(demo_volume()))
    refs = reference_masks(mni)
    t0 = time.perf_counter()
    seg = open_segmenter(model, device=device)
    result = segment_case(seg, mni, list(PROMPTS))
    seconds = time.perf_counter() - t0
    left_half = _left_half(mni)
    rows: List[Dict] = []
    for i, (prompt, (left, right)) in enumerate(PROMPTS.items()):
        assert left in DEEP_GREY and right in DEEP_GREY
        mask = result.mask(i)
        ref = refs[left] | refs[right]
        report = result.segments[i]
        rows.append({
            "prompt": prompt,
            "kind": report.kind,
            "reading": report.reading,
            "dice_both_sides": round(dice(mask, ref), 4),
            "voxels_left_half": int((mask & left_half).sum()),
            "voxels_right_half": int((mask & ~left_half).sum()),
            "laterality_check": report.laterality_check,
            "parts": [{"name": p.name, "volume_ml": p.volume_ml, "laterality_check": p.laterality_check}
                      for p in report.parts],
        })  # fmt: skip
    return {
        "model": result.info.get("model"),
        "image": "MNI152-2009 T1 (nilearn), held out",
        "seconds_total_loaded_machine": round(seconds, 1),
        "mean_dice_both_sides": round(float(np.mean([r["dice_both_sides"] for r in rows])), 4),
        "rows": rows,
    }


def _left_half(image: sitk.Image) -> np.ndarray:
    """Voxels on the patient's left of the MNI midline (LPS x > 0), in SimpleITK (k, j, i) order."""
    size = image.GetSize()
    x = np.array([image.TransformIndexToPhysicalPoint((i, 0, 0))[0] for i in range(size[0])])
    return np.broadcast_to(x > 0, (size[2], size[1], size[0]))


def markdown(s: Dict) -> str:
    lines = [
        f"Model {s['model']['name']} v{s['model']['version']} on the held-out {s['image']}; Dice of the one segment "
        "against the left and right AAL labels together.",
        "",
        "| prompt | read as | Dice (both sides) | voxels patient-left / right half | laterality |",
        "|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        lines.append(
            f"| {r['prompt']} | {r['reading']} | {r['dice_both_sides']:.3f} | {r['voxels_left_half']} / "
            f"{r['voxels_right_half']} | {r['laterality_check']} |"
        )
    lines.append(f"\nMean Dice {s['mean_dice_both_sides']:.3f}.")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="training/runs/heldout_bilateral")
    args = parser.parse_args(argv)
    summary = evaluate(args.model, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(summary) + "\n", encoding="utf-8")
    print(markdown(summary))


if __name__ == "__main__":
    main()
