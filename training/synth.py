"""Label-to-image synthesis of one slice from the full-head class map (SynthSeg-style, methods_round2.md section 1).

Per sample: a Gaussian per class (mean and spread), half of the time near a contrast family (T1, T2, FLAIR, PD,
CT-like) and otherwise uniformly random; a smooth multiplicative bias field; optional thick slices (through-plane by
averaging a slab of neighbouring slices, in-plane by blurring and down/upsampling along one axis); blur; a gamma
curve; then the engine's own MR normalisation (0.5-99.5 percentiles of the *volume*, estimated from the variant's class
voxel counts with the same Gaussians) so a synthetic slice is scaled as the engine would scale the whole volume.
"""

from typing import Dict, Optional, Sequence

import numpy as np
from scipy import ndimage

from .prepare import headmodel as hm

# Relative class intensities of contrast families: air, CSF_ext, skull, soft, fat, CSF, WM L/R, GM L/R,
# caudate, putamen, pallidum, thalamus, hippocampus+amygdala (L/R each), cerebellar cortex L/R, vermis.
_FAMILIES: Dict[str, Sequence[float]] = {
    "t1": [
        0.0,
        0.12,
        0.1,
        0.33,
        0.62,
        0.17,
        0.48,
        0.48,
        0.36,
        0.36,
        0.35,
        0.35,
        0.42,
        0.42,
        0.45,
        0.45,
        0.41,
        0.41,
        0.35,
        0.35,
        0.35,
        0.35,
        0.31,
    ],
    "t2": [
        0.0,
        0.9,
        0.06,
        0.3,
        0.55,
        0.95,
        0.28,
        0.28,
        0.48,
        0.48,
        0.45,
        0.45,
        0.38,
        0.38,
        0.26,
        0.26,
        0.36,
        0.36,
        0.52,
        0.52,
        0.48,
        0.48,
        0.5,
    ],
    "flair": [
        0.0,
        0.08,
        0.05,
        0.35,
        0.7,
        0.06,
        0.42,
        0.42,
        0.58,
        0.58,
        0.55,
        0.55,
        0.5,
        0.5,
        0.42,
        0.42,
        0.5,
        0.5,
        0.62,
        0.62,
        0.55,
        0.55,
        0.55,
    ],
    "pd": [
        0.0,
        0.7,
        0.08,
        0.45,
        0.7,
        0.75,
        0.5,
        0.5,
        0.65,
        0.65,
        0.62,
        0.62,
        0.58,
        0.58,
        0.52,
        0.52,
        0.58,
        0.58,
        0.66,
        0.66,
        0.64,
        0.64,
        0.64,
    ],
    # CT in a brain window (W80/L40): bone saturates, fat and air are black, grey matter slightly above white
    "ct": [
        0.0,
        0.12,
        1.0,
        0.55,
        0.0,
        0.1,
        0.36,
        0.36,
        0.5,
        0.5,
        0.48,
        0.48,
        0.5,
        0.5,
        0.46,
        0.46,
        0.47,
        0.47,
        0.5,
        0.5,
        0.5,
        0.5,
        0.5,
    ],
}
FAMILIES = tuple(_FAMILIES)


def draw_contrast(rng: np.random.Generator, p_family: float = 0.5, family: Optional[str] = None) -> Dict:
    """Random synthesis parameters (means/stds per class in [0, 255], bias, gamma, blur)."""
    n = hm.N_CLASSES
    if family is None and rng.random() < p_family:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    if family is not None:
        means = np.clip(np.asarray(_FAMILIES[family]) + rng.normal(0, 0.06, n), 0, 1) * 255
        stds = rng.uniform(1, 10, n)
    else:
        means = rng.uniform(0, 255, n)
        stds = rng.uniform(0, 25, n)
        r = rng.random()
        if r < 0.3:  # background mostly dark, as in scans (SynthSeg: 5 % zero, 25 % low)
            means[hm.AIR], stds[hm.AIR] = rng.uniform(0, 15), rng.uniform(0, 3)
    for a, b in hm.LR_PAIRS:  # both hemispheres of a tissue look alike in a scan
        if rng.random() < 0.8:
            means[b], stds[b] = means[a] + rng.normal(0, 3), stds[a]
    return {
        "family": family,
        "means": means.astype(np.float32),
        "stds": stds.astype(np.float32),
        "bias_std": float(rng.uniform(0, 0.45)) if rng.random() < 0.8 else 0.0,
        "gamma": float(np.exp(rng.normal(0, 0.3))),
        "blur": float(rng.uniform(0, 1.0)) if rng.random() < 0.5 else 0.0,
    }


def percentiles(params: Dict, class_counts: Sequence[int], rng: np.random.Generator, n: int = 20000):
    """0.5 and 99.5 percentiles of the whole synthetic volume, from its class voxel counts."""
    counts = np.asarray(class_counts, dtype=np.float64)[: len(params["means"])]
    p = counts / counts.sum()
    cls = rng.choice(len(p), size=n, p=p)
    values = params["means"][cls] + params["stds"][cls] * rng.standard_normal(n).astype(np.float32)
    return np.percentile(values, [0.5, 99.5])


def synthesize_slice(
    labels: np.ndarray,
    params: Dict,
    class_counts: Sequence[int],
    rng: np.random.Generator,
    inplane_thick: Optional[tuple] = None,
) -> np.ndarray:
    """(D, H, W) class slab (D odd; the middle is the slice, the others average in for thick slices) -> (H, W)
    float32 image in [0, 255]. ``inplane_thick`` = (axis 0 rows / 1 cols, factor) blurs and resamples one in-plane
    axis like a thick acquisition seen from the side."""
    means, stds = params["means"], params["stds"]
    lab = labels.astype(np.intp)
    image = (means[lab] + stds[lab] * rng.standard_normal(lab.shape).astype(np.float32)).mean(axis=0)
    if inplane_thick is not None:
        axis, factor = inplane_thick
        image = ndimage.gaussian_filter1d(image, 0.75 * factor / 2, axis=axis)
        zoom = [1.0, 1.0]
        zoom[axis] = 1 / factor
        low = ndimage.zoom(image, zoom, order=1)
        image = ndimage.zoom(low, [image.shape[0] / low.shape[0], image.shape[1] / low.shape[1]], order=1)
    if params["blur"] > 0:
        image = ndimage.gaussian_filter(image, params["blur"])
    if params["bias_std"] > 0:
        coarse = rng.normal(0, params["bias_std"], (4, 4))
        field = ndimage.zoom(coarse, (image.shape[0] / 4, image.shape[1] / 4), order=3)
        image = image * np.exp(field[: image.shape[0], : image.shape[1]])
    lo, hi = percentiles(params, class_counts, rng)
    image = np.clip((image - lo) / max(hi - lo, 1.0), 0, 1)
    return (image ** params["gamma"] * 255).astype(np.float32)
