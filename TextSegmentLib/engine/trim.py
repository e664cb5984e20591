"""Outlier trimming: a segment's edge voxels whose intensity is unlike the segment's own are taken off.

A 2D model trained on one head draws a structure with the shape it learned: where the structure has shrunk (an
atrophic hippocampus next to a wider temporal horn) or where the model's edge lies one voxel into the fluid or the white
matter beside it, the segment keeps voxels that do not look like the structure at all. For a structure whose voxels
look alike (a nucleus of grey matter), such a voxel on the segment's edge is taken off when its intensity lies more
than ``sds`` robust standard deviations (1.4826 times the median absolute deviation) from the median of the segment's
inside, in either direction, so that it works for any MR contrast (fluid is dark on T1 and FLAIR, bright on T2).
Only the outer shell (``rim`` voxels deep) is trimmed: the inside is the model's. Which structures are trimmed, and by
how much, the model card says per vocabulary entry (``"trim_outliers"``), chosen on validation scans by
``training.calibrate`` where it gained on every contrast (on v0.12.0: the hippocampus only; the caudate, putamen and
thalamus lost on real T1 images, whose reference boundaries include the partial-volume voxels against the ventricles
and the white matter).
"""

import numpy as np
from scipy import ndimage

#: voxels the inside must hold for its median and spread to mean something
MIN_INSIDE = 50
_SIX = ndimage.generate_binary_structure(3, 1)


def trim_outliers(image: np.ndarray, mask: np.ndarray, sds: float, rim: int = 1) -> np.ndarray:
    """``mask`` without the voxels of its outer ``rim`` (voxels, 6-connected) whose ``image`` value lies more than
    ``sds`` robust standard deviations from the median of the rest of the mask; ``mask`` itself when ``sds`` <= 0,
    when it has fewer than :data:`MIN_INSIDE` inside voxels or when their spread is zero (a constant image).

    Example:
        >>> image = np.full((5, 9, 9), 100.0); image[:, :, 7:] = 20.0  # fluid on one side
        >>> image += np.random.default_rng(0).normal(0, 2.0, image.shape)
        >>> mask = np.zeros(image.shape, bool); mask[:, 1:8, 1:8] = True  # one column too far into the fluid
        >>> int(mask.sum()), int(trim_outliers(image, mask, 2.5).sum())
        (245, 210)
    """
    mask = np.asarray(mask, dtype=bool)
    if sds <= 0 or not mask.any():
        return mask
    inside = ndimage.binary_erosion(mask, _SIX, iterations=max(1, int(rim)))
    if int(inside.sum()) < MIN_INSIDE:
        return mask
    image = np.asarray(image, dtype=np.float32)
    values = image[inside]
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    if spread <= 0.0:
        return mask
    far = np.abs(image - median) > sds * spread
    return mask & ~(far & ~inside)


__all__ = ["MIN_INSIDE", "trim_outliers"]
