"""Augmentation with MONAI transforms, left/right flips that swap labels and prompts, label-to-image synthesis.

Every random choice is drawn from generators seeded per sample, so a batch depends only on (seed, step, index):
resuming or splitting a batch over processes gives the same samples.
"""

from typing import Dict, Optional, Tuple

import numpy as np
import torch

DEFAULTS: Dict[str, float] = {
    "p_flip": 0.5,
    "p_affine": 0.6,
    "rotate_deg": 10.0,
    "scale": 0.12,
    "translate_px": 6.0,
    "p_elastic": 0.25,
    "elastic_magnitude": 2.0,
    "p_scale_shift": 0.5,
    "p_gamma": 0.4,
    "p_bias": 0.35,
    "p_noise": 0.3,
    "noise_std": 6.0,
    "p_blur": 0.2,
    "p_lowres": 0.2,
    "p_synth": 0.15,
}


class SliceAugmenter:
    """Spatial (image + mask together) and intensity (image only) augmentation of a (S, S) slice in [0, 255].

    Left/right flipping is not done here: it must swap the target structure and is done by the sampler
    (:func:`flip_lr`), before the target mask is chosen.
    """

    def __init__(self, options: Optional[Dict] = None) -> None:
        import monai.transforms as T
        from monai.data import set_track_meta

        set_track_meta(False)  # plain tensors: 4x faster, identical results (no MetaTensor bookkeeping)
        o = {**DEFAULTS, **(options or {})}
        self.options = o
        rad = float(np.deg2rad(o["rotate_deg"]))
        self.spatial = T.Compose(
            [
                T.RandAffined(
                    keys=["image", "mask", "prior"],
                    allow_missing_keys=True,
                    prob=o["p_affine"],
                    rotate_range=(rad,),
                    scale_range=(o["scale"], o["scale"]),
                    translate_range=(o["translate_px"], o["translate_px"]),
                    mode=("bilinear", "nearest", "nearest"),
                    padding_mode="zeros",
                ),
                T.Rand2DElasticd(
                    keys=["image", "mask", "prior"],
                    allow_missing_keys=True,
                    prob=o["p_elastic"],
                    spacing=(24, 24),
                    magnitude_range=(0.5, o["elastic_magnitude"]),
                    mode=("bilinear", "nearest", "nearest"),
                    padding_mode="zeros",
                ),
            ]
        )
        self.intensity = T.Compose(
            [
                T.RandSimulateLowResolution(prob=o["p_lowres"], upsample_mode="bilinear", zoom_range=(0.4, 0.9)),
                T.RandBiasField(prob=o["p_bias"], coeff_range=(0.0, 0.3), degree=3),
                T.RandAdjustContrast(prob=o["p_gamma"], gamma=(0.6, 1.6)),
                T.RandScaleIntensity(prob=o["p_scale_shift"], factors=0.15),
                T.RandShiftIntensity(prob=o["p_scale_shift"], offsets=15.0),
                T.RandGaussianSmooth(prob=o["p_blur"], sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0)),
                T.RandGaussianNoise(prob=o["p_noise"], std=o["noise_std"]),
            ]
        )

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int, prior: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Augment one slice ((S, S) or (C, S, S)) and its mask, and a prior mask (mask prompt) with the same
        spatial transform; returns float32 image in [0, 255] (same shape), uint8 mask, uint8 prior or None."""
        self.spatial.set_random_state(seed=seed % (2**32))
        self.intensity.set_random_state(seed=(seed * 7 + 3) % (2**32))
        data = {
            "image": torch.as_tensor(image, dtype=torch.float32)[None] if image.ndim == 2 else torch.as_tensor(image),
            "mask": torch.as_tensor(mask, dtype=torch.float32)[None],
        }
        if prior is not None:
            data["prior"] = torch.as_tensor(prior, dtype=torch.float32)[None]
        data = self.spatial(data)
        img = data["image"]
        if float(img.max()) > float(img.min()):
            img = self.intensity(img)
        img = torch.as_tensor(img).clamp(0, 255).float().numpy()
        img = img[0] if image.ndim == 2 else img
        out_mask = (torch.as_tensor(data["mask"])[0].numpy() > 0.5).astype(np.uint8)
        out_prior = None
        if prior is not None:
            out_prior = (torch.as_tensor(data["prior"])[0].numpy() > 0.5).astype(np.uint8)
        return img, out_mask, out_prior


def degrade(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An imperfect previous mask (for refinement training): shifted by up to 3 px, dilated or eroded."""
    from scipy import ndimage

    out = np.roll(mask.astype(bool), tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
    it = int(rng.integers(0, 3))
    if it:
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        out = op(out, iterations=it)
    return out.astype(np.uint8)


def flip_lr(array: np.ndarray) -> np.ndarray:
    """Mirror a canonical axial slice (or stack) left-right: the last axis runs patient right -> left."""
    return np.ascontiguousarray(array[..., ::-1])


def synthesize(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Label-to-image synthesis (SynthSeg-style): a random mean and noise level per label, background kept dark.

    ``labels`` (S, S) integer map; returns float32 (S, S) in [0, 255].
    """
    values, inverse = np.unique(labels, return_inverse=True)
    means = rng.uniform(0, 255, size=values.size).astype(np.float32)
    stds = rng.uniform(0, 20, size=values.size).astype(np.float32)
    if values[0] == 0:
        means[0], stds[0] = rng.uniform(0, 20), 1.0
    inverse = inverse.reshape(labels.shape)
    image = means[inverse] + stds[inverse] * rng.standard_normal(labels.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.float32)
