"""In-plane, aspect-preserving resize of slices to the model's square input, with padding, and back.

Pixel spacing is honoured: a 512x512 slice with 0.5 x 1.0 mm pixels is shown to the model with its true shape.
"""

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

Pad = Tuple[int, int, int, int]  # slice pixels added (top, bottom, left, right)
NO_PAD: Pad = (0, 0, 0, 0)


@dataclass(frozen=True)
class SliceFit:
    """How an (H, W) slice sits inside the (size, size) model input: scaled to (h, w) at offset (top, left).

    With ``pad`` (top, bottom, left, right) slice pixels, the slice is first extended by its mirror image on those
    sides (a field of view that cuts through the body goes on with what lies next to the cut, not with air): then
    (h, w) is the extended slice's size in the model input, and the slice itself is the part of it that the pad
    leaves out.
    """

    height: int
    width: int
    h: int
    w: int
    top: int
    left: int
    size: int
    pad: Pad = NO_PAD

    @property
    def padded_height(self) -> int:
        return self.height + self.pad[0] + self.pad[1]

    @property
    def padded_width(self) -> int:
        return self.width + self.pad[2] + self.pad[3]

    def to_model(self, rows: np.ndarray, cols: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Voxel (row, col) -> model input pixel (y, x) (continuous, pixel centres at integers)."""
        y = (np.asarray(rows, float) + self.pad[0] + 0.5) * self.h / self.padded_height - 0.5 + self.top
        x = (np.asarray(cols, float) + self.pad[2] + 0.5) * self.w / self.padded_width - 0.5 + self.left
        return y, x

    def from_model(self, y: np.ndarray, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Model input pixel (y, x) -> voxel (row, col)."""
        rows = (np.asarray(y, float) - self.top + 0.5) * self.padded_height / self.h - 0.5 - self.pad[0]
        cols = (np.asarray(x, float) - self.left + 0.5) * self.padded_width / self.w - 0.5 - self.pad[2]
        return rows, cols

    def to_slices(self, model_maps: torch.Tensor) -> torch.Tensor:
        """(N, size, size) model-resolution maps (e.g. logits) -> (N, H, W), bilinear."""
        crop = model_maps[:, self.top : self.top + self.h, self.left : self.left + self.w]
        size = (self.padded_height, self.padded_width)
        out = F.interpolate(crop[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
        return out[:, self.pad[0] : self.pad[0] + self.height, self.pad[2] : self.pad[2] + self.width]


def plan_fit(height: int, width: int, row_spacing: float, col_spacing: float, size: int, pad: Pad = NO_PAD) -> SliceFit:
    """Plan the aspect-preserving fit of an (H, W) slice with the given pixel spacing, extended by ``pad``
    (top, bottom, left, right) mirrored pixels, into ``size`` x ``size``.

    Example:
        >>> plan_fit(512, 256, 0.5, 1.0, 256)  # square in millimetres
        SliceFit(height=512, width=256, h=256, w=256, top=0, left=0, size=256, pad=(0, 0, 0, 0))
        >>> plan_fit(100, 200, 1.0, 1.0, 100, pad=(0, 20, 0, 0)).h  # 120 of 200 mm tall
        60
    """
    extent_h = (height + pad[0] + pad[1]) * row_spacing
    extent_w = (width + pad[2] + pad[3]) * col_spacing
    pixel = max(extent_h, extent_w) / size
    h = max(1, min(size, int(round(extent_h / pixel))))
    w = max(1, min(size, int(round(extent_w / pixel))))
    return SliceFit(height, width, h, w, (size - h) // 2, (size - w) // 2, size, tuple(int(v) for v in pad))


def fit_slices(slices: np.ndarray, fit: SliceFit, pad_value: float = 0.0) -> torch.Tensor:
    """(N, H, W) float slices -> (N, size, size) float32 tensor, bilinear (anti-aliased when shrinking), padded
    (extended by their mirror image first where ``fit.pad`` says so)."""
    array = np.asarray(slices)
    if any(fit.pad):
        top, bottom, left, right = fit.pad
        array = np.pad(array, ((0, 0), (top, bottom), (left, right)), mode="symmetric")
    x = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)[:, None]
    shrink = fit.h < fit.padded_height or fit.w < fit.padded_width
    x = F.interpolate(x, size=(fit.h, fit.w), mode="bilinear", align_corners=False, antialias=shrink)
    out = torch.full((x.shape[0], fit.size, fit.size), float(pad_value), dtype=torch.float32)
    out[:, fit.top : fit.top + fit.h, fit.left : fit.left + fit.w] = x[:, 0]
    return out
