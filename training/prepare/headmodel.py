"""A full-head generation label map for label-to-image synthesis (SynthSeg-style), built from one labelled MRI.

Classes (uint8, on the image's own grid, SimpleITK array order):

- 0 air; 1 extra-cerebral CSF; 2 skull; 3 soft tissue (muscle, dura); 4 fat, scalp and marrow
- 5 CSF inside the brain; 6/7 white matter left/right; 8/9 cortical grey matter left/right
- 10-23 deep and infratentorial structures (:data:`NUCLEI`): each nucleus its own class per side, hippocampus and
  amygdala shared (as SynthSeg), cerebellar cortex per side, vermis

Head = Otsu threshold of the image with holes filled; brain = the skull-stripped image's support (and every labelled
voxel). Inside the brain the unlabelled voxels are split into CSF / grey / white matter by 3-class k-means of the
intensity; between head and brain into dark / mid / bright, the dark class split by its distance to the brain into
CSF (the first few mm) and skull. Outside the deep nuclei every brain voxel (AAL cortex included) is CSF, grey or
white matter by its intensity, with one class per hemisphere, so the synthesised images have the real image's tissue
boundaries and no parcel edges that real scans lack.
"""

from typing import Dict, List, Sequence

import numpy as np
import SimpleITK as sitk

AIR, CSF_EXT, SKULL, SOFT, FAT, CSF, WM_L, WM_R, GM_L, GM_R = range(10)
#: (class, AAL values) of the deep and infratentorial structures
NUCLEI: List[Sequence[int]] = [
    (10, [71]),  # caudate L
    (11, [72]),
    (12, [73]),  # putamen L
    (13, [74]),
    (14, [75]),  # pallidum L
    (15, [76]),
    (16, [77]),  # thalamus L
    (17, [78]),
    (18, [37, 41]),  # hippocampus + amygdala L
    (19, [38, 42]),
    (20, list(range(91, 108, 2))),  # cerebellar cortex L (odd AAL values 91..107)
    (21, list(range(92, 109, 2))),
    (22, list(range(109, 117))),  # vermis
]
N_CLASSES = 23
BRAIN_CLASSES = list(range(CSF, N_CLASSES))
HEAD_CLASSES = list(range(1, N_CLASSES))
#: classes whose voxels lie in the left hemisphere (a left/right flip swaps each with its partner)
LR_PAIRS = [(WM_L, WM_R), (GM_L, GM_R)] + [(c, c + 1) for c in range(10, 20, 2)] + [(20, 21)]


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Sorted cluster centres of 1D ``values`` (k-means started at quantiles).

    Example:
        >>> kmeans_1d(np.array([0., 1, 2, 10, 11, 12]), 2).round(1).tolist()
        [1.0, 11.0]
    """
    v = values.astype(np.float64).ravel()
    centres = np.quantile(v, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        assign = np.argmin(np.abs(v[:, None] - centres[None]), axis=1)
        new = np.array([v[assign == i].mean() if (assign == i).any() else centres[i] for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def _nearest(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmin(np.abs(values[:, None].astype(np.float64) - centres[None]), axis=1)


def head_mask(image: sitk.Image) -> np.ndarray:
    """Head support: Otsu threshold of the smoothed image, largest component, holes filled (3D and per slice)."""
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.0)
    mask = sitk.OtsuThreshold(smooth, 0, 1)
    mask = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1
    mask = sitk.BinaryMorphologicalClosing(mask, [3, 3, 3])
    mask = sitk.BinaryFillhole(mask)
    out = sitk.GetArrayFromImage(mask).astype(bool)
    for k in range(out.shape[0]):  # the neck opening leaves axial holes that 3D filling cannot reach
        if out[k].any():
            out[k] = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(out[k].astype(np.uint8)))) > 0
    return out


def generation_labels(image: sitk.Image, brain: np.ndarray, aal: np.ndarray, midline_index: float) -> np.ndarray:
    """The full-head class map (see the module docstring). ``brain`` and ``aal`` are on the image grid (array
    order); ``midline_index`` is the continuous i (x) index of the mid-sagittal plane; the patient's left is the side
    of larger physical x in LPS."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    head = head_mask(image) | brain | (aal > 0)
    brain = brain | (aal > 0)
    out = np.zeros(array.shape, dtype=np.uint8)
    i_index = np.arange(array.shape[2], dtype=np.float32)[None, None, :]
    left = np.broadcast_to(_left_of(image, i_index, midline_index), array.shape)

    nuclei = np.isin(aal, [v for _, values in NUCLEI for v in values])
    rest = brain & ~nuclei  # cortex and everything unlabelled: CSF / GM / WM by intensity, as the image shows it
    centres = kmeans_1d(array[rest][::7], 3)
    cls = _nearest(array[rest], centres)  # 0 CSF, 1 GM, 2 WM
    side = left[rest]
    out[rest] = np.select([cls == 0, cls == 1], [CSF, np.where(side, GM_L, GM_R)], np.where(side, WM_L, WM_R)).astype(
        np.uint8
    )
    for value, values in NUCLEI:
        out[np.isin(aal, values)] = value

    outer = head & ~brain
    centres = kmeans_1d(array[outer][::7], 3)
    cls = _nearest(array[outer], centres)
    dist = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(sitk.GetImageFromArray(brain.astype(np.uint8)), False, False, True)
    )
    near = dist[outer] < 3.0
    out[outer] = np.select([(cls == 0) & near, cls == 0, cls == 1], [CSF_EXT, SKULL, SOFT], FAT).astype(np.uint8)
    return out


def _left_of(image: sitk.Image, i_index: np.ndarray, midline_index: float) -> np.ndarray:
    """Whether voxel column ``i`` lies on the patient's left (LPS: larger x) of the mid-sagittal plane."""
    direction_x = image.GetDirection()[0] * image.GetSpacing()[0]
    return (i_index - midline_index) * direction_x > 0


def class_statistics(array: np.ndarray, labels: np.ndarray) -> Dict[int, List[float]]:
    """Mean and standard deviation of the image intensity per class (the T1-like prior of the real image)."""
    out = {}
    for c in range(N_CLASSES):
        m = labels == c
        if m.any():
            v = array[m].astype(np.float64)
            out[c] = [float(v.mean()), float(v.std())]
    return out
