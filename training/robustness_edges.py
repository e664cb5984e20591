"""The edges of clinical scans, as variants of the held-out MNI152 T1 for the robustness report (our own
implementations and parameters; nothing here is used to train or to choose).

- Fields of view that end at the deep grey structures: the top edge at the middle of the thalami and 10 mm above
  it, the bottom edge there, and 30 mm coronal and axial slabs through the thalami.
- Rotations beyond the trained range: 30 degrees about two axes, 30 degrees in the axial plane, a T2-like contrast
  nodding 20 degrees; and a PD-like contrast (grey about as bright as white matter, bright fluid).
- An oblique grid: the same brain resampled onto a grid tilted 15 degrees about the head-foot axis; scored against
  the reference carried onto that grid, and its segments compared with the straight image's (orientation agreement).
- Atrophy: the inner CSF grown by 2 mm into the tissue around it and the hippocampi and amygdalae losing a patchy
  rim (the training bank's own :func:`training.prepare.variants.atrophy_lost` on a tissue map of the T1); the
  reference loses the same voxels, so the true volume change is known, and the report compares the predicted change.
"""

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import SimpleITK as sitk

from .prepare import headmodel
from .prepare.variants import atrophy_lost

THALAMI = (77, 78)
HIPPO_AMYGDALA = {37: 18, 41: 18, 38: 19, 42: 19}  # AAL -> generation class (left 18, right 19)


def _like(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def fov_variants(mni: sitk.Image, labels: sitk.Image) -> Dict[str, Tuple[sitk.Image, sitk.Image]]:
    """{name: (image, reference)}: fields of view cut through the deep grey structures."""
    arr = sitk.GetArrayFromImage(labels)
    k, j, _ = np.argwhere(np.isin(arr, THALAMI)).mean(axis=0).astype(int)
    nx, ny, nz = mni.GetSize()
    boxes = {
        "FOV top edge at mid-thalamus": ([0, 0, 0], [nx, ny, int(k) + 1]),
        "FOV top edge 10 mm above mid-thalamus": ([0, 0, 0], [nx, ny, int(k) + 11]),
        "FOV bottom edge at mid-thalamus": ([0, 0, int(k)], [nx, ny, nz]),
        "coronal slab 30 mm through the thalami": ([0, int(j) - 15, 0], [nx, int(j) + 15, nz]),
        "axial slab 30 mm through the thalami": ([0, 0, int(k) - 15], [nx, ny, int(k) + 15]),
    }
    out = {}
    for name, (lo, hi) in boxes.items():
        size = [h - lo_ for lo_, h in zip(lo, hi)]
        out[name] = (sitk.RegionOfInterest(mni, size, lo), sitk.RegionOfInterest(labels, size, lo))
    return out


def rotation_variants(mni: sitk.Image, labels: sitk.Image, t2: sitk.Image) -> Dict[str, Tuple[sitk.Image, sitk.Image]]:
    """{name: (image, reference)}: the head turned beyond the trained +-20 degrees (content, on the same grid)."""
    from .robustness import _affine_about_centre, _rotation

    out = {}
    for name, image, matrix in (
        ("rotated 30 deg about two axes", mni, _rotation(0, 30) @ _rotation(1, 30)),
        ("rotated 30 deg in the axial plane", mni, _rotation(2, 30)),
        ("T2-like, nodding 20 deg", t2, _rotation(0, 20)),
    ):
        t = _affine_about_centre(mni, matrix)
        moved = sitk.Resample(image, mni, t, sitk.sitkLinear, float(sitk.GetArrayViewFromImage(image).min()))
        out[name] = (moved, sitk.Resample(labels, mni, t, sitk.sitkNearestNeighbor, 0, labels.GetPixelID()))
    return out


def pd_like(mni: sitk.Image) -> sitk.Image:
    """A proton-density-like image of the same brain: fluid bright, grey about as bright as white matter."""
    from .robustness import _tissue_centres

    t1 = sitk.GetArrayFromImage(mni).astype(np.float32)
    brain = t1 > 0
    csf, gm, wm = _tissue_centres(t1, brain)
    rng = np.random.default_rng(3)
    pd = np.interp(t1, [0, csf, gm, wm, float(t1.max())], [0, 200, 150, 135, 130]) + rng.normal(0, 4, t1.shape)
    return _like(mni, np.where(brain, pd, 0).astype(np.float32))


def oblique_grid(image: sitk.Image, degrees: float, interpolator=sitk.sitkLinear) -> sitk.Image:
    """``image`` resampled onto a grid of the same size and spacing tilted by ``degrees`` about the head-foot axis
    (an oblique acquisition of the same head)."""
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    direction = rot @ np.asarray(image.GetDirection()).reshape(3, 3)
    grid = sitk.Image(image.GetSize(), image.GetPixelID())
    grid.SetSpacing(image.GetSpacing())
    grid.SetDirection(direction.ravel().tolist())
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    half = direction @ (np.asarray(image.GetSpacing()) * (np.asarray(image.GetSize()) - 1) / 2)
    grid.SetOrigin((centre - half).tolist())
    return sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def same_region_dice(whole: sitk.Image, ref: sitk.Image, values: List[int], labels: List[List[int]]) -> float:
    """Mean Dice, over the structures, of the uncut scan's segmentation ``whole`` (label ``values[i]`` for structure
    i) within the field of view of the cut reference ``ref`` (structure i: AAL ``labels[i]``): what the cut scan
    would score if cutting changed nothing but the region scored (a structure the cut leaves a sliver of scores low
    either way)."""
    pred = sitk.GetArrayFromImage(sitk.Resample(whole, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    truth = sitk.GetArrayFromImage(ref)
    scores = []
    for v, codes in zip(values, labels):
        p, q = pred == v, np.isin(truth, codes)
        scores.append(2.0 * float((p & q).sum()) / max(1.0, float(p.sum() + q.sum())))
    return round(float(np.mean(scores)), 4)


def agreement(straight: Path, oblique: Path, labels: List[int]) -> List[float]:
    """Dice, per label, between the straight image's segmentation and the oblique grid's carried back onto the
    straight grid (nearest neighbour)."""
    a = sitk.ReadImage(str(straight))
    b = sitk.Resample(sitk.ReadImage(str(oblique)), a, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    x, y = sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)
    out = []
    for v in labels:
        p, q = x == v, y == v
        out.append(round(2.0 * float((p & q).sum()) / max(1.0, float(p.sum() + q.sum())), 4))
    return out


def atrophic(mni: sitk.Image, labels: sitk.Image, csf_mm: float = 2.0, hippo_mm: float = 1.3, fraction: float = 0.6):
    """(image, reference) of an atrophic version of the brain: see the module docstring."""
    from .robustness import _tissue_centres

    t1 = sitk.GetArrayFromImage(mni).astype(np.float32)
    ref = sitk.GetArrayFromImage(labels).copy()
    brain = t1 > 0
    c_csf, c_gm, _ = _tissue_centres(t1, brain)
    gen = np.zeros(t1.shape, dtype=np.uint8)
    gen[brain] = headmodel.WM_L  # tissue
    gen[brain & (t1 < (c_csf + c_gm) / 2)] = headmodel.CSF
    for value, cls in HIPPO_AMYGDALA.items():
        gen[ref == value] = cls
    spacing = tuple(float(s) for s in mni.GetSpacing()[::-1])
    lost = atrophy_lost(gen, spacing, {"csf_mm": csf_mm, "hippo_mm": hippo_mm, "fraction": fraction}, seed=11)
    lost &= brain
    image = t1.copy()
    image[lost] = c_csf + np.random.default_rng(5).normal(0, 2.0, int(lost.sum()))
    ref[lost] = 0
    return _like(mni, np.maximum(image, 1.0) * brain), _like(labels, ref)


def volume_tracking(shipped: List[Dict], atrophy: List[Dict]) -> List[Dict]:
    """Per structure: the true and the predicted volume change (%) from the shipped image to its atrophic version."""
    out = []
    for a, b in zip(shipped, atrophy):
        true = 100.0 * (b["ref_ml"] / max(a["ref_ml"], 1e-6) - 1)
        pred = 100.0 * (b["pred_ml"] / max(a["pred_ml"], 1e-6) - 1)
        row = {"structure": a["structure"], "true_change_pct": round(true, 1), "predicted_change_pct": round(pred, 1)}
        out.append(row)
    return out


__all__ = [
    "agreement",
    "atrophic",
    "fov_variants",
    "oblique_grid",
    "pd_like",
    "rotation_variants",
    "same_region_dice",
    "volume_tracking",
]
