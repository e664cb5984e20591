"""Robustness report on the held-out MNI152-2009 T1: the same brain changed the ways clinical scans differ.

Every variant is written as a NIfTI file and segmented through the command line (as a user would), with the eight
deep grey prompts in a held-out phrasing. Variants: other contrasts (T2-, FLAIR- and CT-like, made from the T1's own
tissue intensities), intensity non-uniformity, a field of view cut on one side and at the top, heads 12 % smaller and
larger, tilts of 15 degrees about two axes, thick slices (1 x 1 x 4 and 4 x 1 x 1 mm) and 2 mm voxels; also phrasings
(abbreviations, side after the name, capitals, polite sentences), prompt lengths with and without the engine's
vocabulary matching, and one view against three. Spatial variants move the reference labels with the image
(nearest neighbour); coarser grids are compared on the 1 mm reference after nearest-neighbour upsampling of the
prediction. MNI152 is never used to train or to choose anything; this is a report only.

    python -m training.robustness --model TextSegmentLib/resources/models/<bundle> --out training/runs/robustness
"""

import argparse
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from TextSegmentLib.demo import demo_volume

from .heldout import DEEP_GREY, HELDOUT_TEMPLATE, LENGTH_PROMPTS, reference_labels, run_cli
from .metrics import dice, nsd

PHRASINGS = {  # {name} is the structure without its side, {side}/{s}/{short} its side
    "canonical": "{side} {name}",
    "L / R": "{s} {name}",
    "lt / rt": "{short} {name}",
    "side after": "{name}, {side}",
    "capitals": "{SIDE} {NAME}",
    "polite": "Could you please outline the {side} {name} for me?",
}


def _tissue_centres(t1: np.ndarray, brain: np.ndarray) -> Tuple[float, float, float]:
    from .prepare.headmodel import kmeans_1d

    c = kmeans_1d(t1[brain][::5], 3)
    return float(c[0]), float(c[1]), float(c[2])


def _like(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def contrast_variants(mni: sitk.Image) -> Dict[str, sitk.Image]:
    """T2-, FLAIR- and CT-like images of the same brain and a bias field, from the T1's tissue intensities."""
    t1 = sitk.GetArrayFromImage(mni).astype(np.float32)
    brain = t1 > 0
    csf, gm, wm = _tissue_centres(t1, brain)
    top = float(t1.max())
    rng = np.random.default_rng(0)

    def remap(values: Sequence[float]) -> np.ndarray:
        return np.interp(t1, [0, csf, gm, wm, top], values).astype(np.float32)

    t2 = np.where(brain, remap([0, 230, 120, 60, 50]) + rng.normal(0, 4, t1.shape), 0)  # bright fluid, dark WM
    flair = np.where(brain, remap([0, 25, 160, 110, 100]) + rng.normal(0, 4, t1.shape), 0)  # dark fluid, GM > WM
    ct = np.where(brain, remap([0, 8, 40, 28, 28]) + rng.normal(0, 3, t1.shape), -1000)  # HU, no skull
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in t1.shape], indexing="ij")
    bias = t1 * np.exp(0.3 * x + 0.2 * z - 0.15 * y)
    return {
        "T2-like": _like(mni, t2.astype(np.float32)),
        "FLAIR-like": _like(mni, flair.astype(np.float32)),
        "CT-like (HU)": _like(mni, np.rint(ct).astype(np.int16)),
        "bias field": _like(mni, bias.astype(np.float32)),
    }


def _affine_about_centre(image: sitk.Image, matrix: np.ndarray) -> sitk.AffineTransform:
    centre = image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()])
    t = sitk.AffineTransform(3)
    t.SetCenter(centre)
    t.SetMatrix(np.linalg.inv(matrix).ravel().tolist())  # resampling maps output -> input points
    return t


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def spatial_variants(mni: sitk.Image, labels: sitk.Image) -> Dict[str, Tuple[sitk.Image, sitk.Image, bool]]:
    """{name: (image, reference labels on the image's grid or on the 1 mm grid, compare on the 1 mm grid)}."""
    out: Dict[str, Tuple[sitk.Image, sitk.Image, bool]] = {}
    for name, matrix in (
        ("head 12 % smaller", np.eye(3) * 0.88),
        ("head 12 % larger", np.eye(3) * 1.12),
        ("tilted 15 deg (nodding)", _rotation(0, 15)),
        ("tilted 15 deg (rolling)", _rotation(1, 15)),
    ):
        t = _affine_about_centre(mni, matrix)
        image = sitk.Resample(mni, mni, t, sitk.sitkLinear, 0.0, mni.GetPixelID())
        ref = sitk.Resample(labels, mni, t, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
        out[name] = (image, ref, False)
    size = mni.GetSize()
    crop = [0, 0, 0], [size[0] - 40, size[1], size[2] - 45]  # one side (40 mm) and the top (45 mm) cut off
    out["field of view cut (side and top)"] = (
        sitk.RegionOfInterest(mni, crop[1], crop[0]),
        sitk.RegionOfInterest(labels, crop[1], crop[0]),
        False,
    )
    for name, spacing in (
        ("thick slices 1x1x4 mm", (1.0, 1.0, 4.0)),
        ("thick slices 4x1x1 mm", (4.0, 1.0, 1.0)),
        ("2 mm voxels", (2.0, 2.0, 2.0)),
    ):
        out[name] = (_resample_to(mni, spacing), labels, True)
    return out


def _resample_to(image: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An acquisition at coarser ``spacing``: blurred (slice profile) and resampled, same field of view."""
    sigma = [max(0.0, (s - o) * 0.5) for s, o in zip(spacing, image.GetSpacing())]
    blurred = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), [max(v, 1e-3) for v in sigma])
    size = [int(round(n * o / s)) for n, o, s in zip(image.GetSize(), image.GetSpacing(), spacing)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetDirection(image.GetDirection())
    first = [(s - o) / 2 for s, o in zip(spacing, image.GetSpacing())]  # same outer edge of the field of view
    grid.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([f / o for f, o in zip(first, image.GetSpacing())]))
    return sitk.Resample(blurred, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def score(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], voxel_ml: float) -> Dict:
    return {
        "dice": round(dice(pred, ref), 4),
        "nsd_1mm": round(nsd(pred, ref, spacing, 1.0), 4),
        "nsd_2mm": round(nsd(pred, ref, spacing, 2.0), 4),
        "pred_ml": round(float(pred.sum()) * voxel_ml, 2),
        "ref_ml": round(float(ref.sum()) * voxel_ml, 2),
    }


class Runner:
    """Runs the CLI on variant images and scores the deep grey structures."""

    def __init__(self, model: str, out: Path, device: str, resume: bool = False) -> None:
        self.model, self.out, self.device, self.resume = model, out, device, resume
        card = Path(model) / "model.json"
        self.version = json.loads(card.read_text()).get("version") if card.exists() else None
        self.rows: List[Dict] = []
        self.timings: Dict[str, float] = {}

    def run(
        self,
        group: str,
        image: sitk.Image,
        ref_labels: sitk.Image,
        on_reference_grid: bool = False,
        prompts: Optional[Callable[[str], str]] = None,
        extra: Sequence[str] = (),
    ) -> List[Dict]:
        slug = "".join(c if c.isalnum() else "_" for c in group).strip("_")
        src = self.out / f"in_{slug}.nii.gz"
        sitk.WriteImage(image, str(src))
        names = list(DEEP_GREY)
        texts = [(prompts or (lambda n: HELDOUT_TEMPLATE.format(name=n)))(n) for n in names]
        output = self.out / f"seg_{slug}.nii.gz"
        done = self._finished(output, texts) if self.resume else None
        segments, seconds = done or run_cli(self.model, src, texts, output, self.device, list(extra))
        self.timings[group] = round(seconds, 1)
        pred_img = sitk.ReadImage(str(output))
        if on_reference_grid:
            pred_img = sitk.Resample(pred_img, ref_labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        pred = sitk.GetArrayFromImage(pred_img)
        ref = sitk.GetArrayFromImage(ref_labels)
        spacing = ref_labels.GetSpacing()[::-1]
        voxel_ml = float(np.prod(spacing)) / 1000
        rows = []
        for name, text, seg in zip(names, texts, segments):
            ref_mask = np.isin(ref, DEEP_GREY[name])
            rows.append({"group": group, "structure": name, "prompt": text, "found": seg["found"],
                         **score(pred == seg["label"], ref_mask, spacing, voxel_ml)})  # fmt: skip
        self.rows += rows
        return rows

    def _finished(self, output: Path, texts: List[str]) -> Optional[Tuple[List[Dict], float]]:
        """An earlier run's result for the same prompts and model version, if it is complete (report written last)."""
        report_path = Path(str(output) + ".json")
        if not (output.exists() and report_path.exists()):
            return None
        report = json.loads(report_path.read_text())
        if [s["prompt"] for s in report["segments"]] != texts or report["model"].get("version") != self.version:
            return None
        return report["segments"], float(report["seconds"])


def _side_parts(name: str) -> Dict[str, str]:
    side, base = name.split(" ", 1)
    return {"side": side, "s": side[0].upper(), "short": {"left": "lt", "right": "rt"}[side], "name": base,
            "SIDE": side.upper(), "NAME": base.upper()}  # fmt: skip


def evaluate(model: str, out: Path, device: str = "cpu", resume: bool = False) -> Dict:
    """Run every variant; returns (and writes) the summary with one mean Dice per variant.

    ``resume`` reuses the segmentations an interrupted run already finished (same prompts, same model version).
    """
    out.mkdir(parents=True, exist_ok=True)
    mni = sitk.ReadImage(str(demo_volume()))
    labels = _like(mni, reference_labels(mni).astype(np.uint8))
    r = Runner(model, out, device, resume)
    r.run("as shipped", mni, labels)
    contrasts = contrast_variants(mni)
    for name, image in contrasts.items():
        r.run(name, image, labels)
    for name, (image, ref, coarse) in spatial_variants(mni, labels).items():
        r.run(name, image, ref, on_reference_grid=coarse)
    edges = _edge_variants(r, mni, labels, contrasts["T2-like"], out)
    for name, tpl in PHRASINGS.items():
        r.run(f"phrasing: {name}", mni, labels, prompts=lambda n, t=tpl: t.format(**_side_parts(n)))
    for bucket, tpl in LENGTH_PROMPTS.items():
        for mode in ("matched", "raw"):
            r.run(f"{bucket} words ({mode})", mni, labels, prompts=lambda n, t=tpl: t.format(name=n),
                  extra=["--prompt-text", mode])  # fmt: skip
    r.run("one view (axial)", mni, labels, extra=["--views", "axial"])
    groups = list(dict.fromkeys(row["group"] for row in r.rows))
    summary = {
        "model": model,
        "variants": {
            g: {
                k: round(float(np.mean([x[k] for x in r.rows if x["group"] == g])), 4)
                for k in ("dice", "nsd_1mm", "nsd_2mm")
            }
            for g in groups
        },  # fmt: skip
        "volume_ratio": {
            g: round(float(np.mean([x["pred_ml"] / max(x["ref_ml"], 1e-6) for x in r.rows if x["group"] == g])), 3)
            for g in groups
        },
        "timings_s": r.timings,
        **edges,
        "rows": r.rows,
    }
    (out / "robustness.json").write_text(json.dumps(summary, indent=2))
    (out / "robustness.md").write_text(markdown(summary))
    return summary


def _edge_variants(r: "Runner", mni: sitk.Image, labels: sitk.Image, t2: sitk.Image, out: Path) -> Dict:
    """The edges of clinical scans (:mod:`training.robustness_edges`): fields of view cut through the deep grey
    structures, large rotations, PD-like contrast, an oblique grid (with the orientation agreement) and atrophy
    (with the volume tracking)."""
    from . import robustness_edges as e

    shipped = [row for row in r.rows if row["group"] == "as shipped"]
    whole = sitk.ReadImage(str(out / "seg_as_shipped.nii.gz"))
    report = json.loads((out / "seg_as_shipped.nii.gz.json").read_text())
    values = [int(seg["label"]) for seg in report["segments"]]
    uncut = {}
    for name, (image, ref) in e.fov_variants(mni, labels).items():
        r.run(name, image, ref)
        uncut[name] = e.same_region_dice(whole, ref, values, [DEEP_GREY[n] for n in DEEP_GREY])
    for name, (image, ref) in e.rotation_variants(mni, labels, t2).items():
        r.run(name, image, ref)
    r.run("PD-like", e.pd_like(mni), labels)
    r.run("oblique grid 15 deg", e.oblique_grid(mni, 15), e.oblique_grid(labels, 15, sitk.sitkNearestNeighbor))
    agree = e.agreement(out / "seg_as_shipped.nii.gz", out / "seg_oblique_grid_15_deg.nii.gz", values)
    image, ref = e.atrophic(mni, labels)
    atrophy = r.run("atrophy (ventricles and sulci +2 mm, hippocampal rim)", image, ref)
    return {
        "fov_uncut_same_region": uncut,
        "orientation_agreement_15deg": {row["structure"]: a for row, a in zip(shipped, agree)},
        "volume_tracking": e.volume_tracking(shipped, atrophy),
    }


def markdown(s: Dict) -> str:
    lines = [
        "| the held-out MNI152 T1, changed | mean Dice (8 deep grey) | NSD 1 mm | NSD 2 mm | predicted / reference "
        "volume |",
        "|---|---|---|---|---|",
    ]
    for g, v in s["variants"].items():
        ratio = s["volume_ratio"][g]
        lines.append(f"| {g} | {v['dice']:.3f} | {v['nsd_1mm']:.3f} | {v['nsd_2mm']:.3f} | {ratio:.2f} |")
    if s.get("fov_uncut_same_region"):
        lines += ["", "| field of view | mean Dice, cut scan | the uncut scan's segments in the same region |",
                  "|---|---|---|"]  # fmt: skip
        lines += [f"| {k} | {s['variants'][k]['dice']:.3f} | {v:.3f} |" for k, v in s["fov_uncut_same_region"].items()]
    if s.get("orientation_agreement_15deg"):
        lines += ["", "| structure | agreement, straight vs 15-degree oblique grid (Dice) |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in s["orientation_agreement_15deg"].items()]
    if s.get("volume_tracking"):
        lines += ["", "| structure | true volume change under atrophy | predicted change |", "|---|---|---|"]
        lines += [
            f"| {t['structure']} | {t['true_change_pct']:+.1f} % | {t['predicted_change_pct']:+.1f} % |"
            for t in s["volume_tracking"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Robustness report on variants of the held-out MNI152 T1")
    parser.add_argument("--model", required=True, help="bundle folder or catalog id")
    parser.add_argument("--out", default="training/runs/robustness")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resume", action="store_true", help="reuse the segmentations an interrupted run finished")
    args = parser.parse_args(argv)
    summary = evaluate(args.model, Path(args.out), args.device, args.resume)
    print(markdown(summary))


if __name__ == "__main__":
    main()
