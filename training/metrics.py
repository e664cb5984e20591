"""Segmentation metrics on boolean masks (2D or 3D) with physical spacing: Dice, NSD (MONAI), HD95 (MONAI)."""

from typing import Sequence

import numpy as np
import torch


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    p, g = pred.astype(bool), gt.astype(bool)
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * (p & g).sum() / denom)


def _onehot(mask: np.ndarray) -> torch.Tensor:
    m = torch.as_tensor(np.ascontiguousarray(mask.astype(bool)))
    return torch.stack([~m, m])[None].float()


def nsd(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (seed 000 uses 2 mm); 0 when exactly one mask is empty."""
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    from monai.metrics import compute_surface_dice

    value = compute_surface_dice(_onehot(p), _onehot(g), [tolerance_mm], spacing=list(spacing))
    return float(value[0, 0])


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (NaN when a mask is empty)."""
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() or not g.any():
        return float("nan")
    from monai.metrics import compute_hausdorff_distance

    value = compute_hausdorff_distance(_onehot(p), _onehot(g), percentile=95, spacing=list(spacing))
    return float(value[0, 0])
