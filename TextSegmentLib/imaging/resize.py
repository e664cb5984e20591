"""In-plane, aspect-preserving resize of slices to the model's square input, with padding, and back.

Pixel spacing is honoured: a 512x512 slice with 0.5 x 1.0 mm pixels is shown to the model with its true shape.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SliceFit:
    """How an (H, W) slice sits inside the (size, size) model input: scaled to (h, w) at offset (top, left)."""

    height: int
    width: int
    h: int
    w: int
    top: int
    left: int
    size: int

    def to_model(self, rows: np.ndarray, cols: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Voxel (row, col) -> model input pixel (y, x) (continuous, pixel centres at integers)."""
        y = (np.asarray(rows, float) + 0.5) * self.h / self.height - 0.5 + self.top
        x = (np.asarray(cols, float) + 0.5) * self.w / self.width - 0.5 + self.left
        return y, x

    def from_model(self, y: np.ndarray, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Model input pixel (y, x) -> voxel (row, col)."""
        rows = (np.asarray(y, float) - self.top + 0.5) * self.height / self.h - 0.5
        cols = (np.asarray(x, float) - self.left + 0.5) * self.width / self.w - 0.5
        return rows, cols

    def to_slices(self, model_maps: torch.Tensor) -> torch.Tensor:
        """(N, size, size) model-resolution maps (e.g. logits) -> (N, H, W), bilinear."""
        crop = model_maps[:, self.top : self.top + self.h, self.left : self.left + self.w]
        out = F.interpolate(crop[:, None].float(), size=(self.height, self.width), mode="bilinear", align_corners=False)
        return out[:, 0]


def plan_fit(height: int, width: int, row_spacing: float, col_spacing: float, size: int) -> SliceFit:
    """Plan the aspect-preserving fit of an (H, W) slice with the given pixel spacing into ``size`` x ``size``.

    Example:
        >>> plan_fit(512, 256, 0.5, 1.0, 256)  # square in millimetres
        SliceFit(height=512, width=256, h=256, w=256, top=0, left=0, size=256)
    """
    extent_h, extent_w = height * row_spacing, width * col_spacing
    pixel = max(extent_h, extent_w) / size
    h = max(1, min(size, int(round(extent_h / pixel))))
    w = max(1, min(size, int(round(extent_w / pixel))))
    return SliceFit(height, width, h, w, (size - h) // 2, (size - w) // 2, size)


def fit_slices(slices: np.ndarray, fit: SliceFit, pad_value: float = 0.0) -> torch.Tensor:
    """(N, H, W) float slices -> (N, size, size) float32 tensor, bilinear (anti-aliased when shrinking), padded."""
    x = torch.as_tensor(np.ascontiguousarray(slices), dtype=torch.float32)[:, None]
    shrink = fit.h < fit.height or fit.w < fit.width
    x = F.interpolate(x, size=(fit.h, fit.w), mode="bilinear", align_corners=False, antialias=shrink)
    out = torch.full((x.shape[0], fit.size, fit.size), float(pad_value), dtype=torch.float32)
    out[:, fit.top : fit.top + fit.h, fit.left : fit.left + fit.w] = x[:, 0]
    return out
