"""A tighter box for the fine pass: the fused probability estimated from the coarse pass alone.

The planes' bounding boxes (:func:`multiview.target_box`) hold everything any two planes found anywhere, and a model
that finds its target in a region larger than the target makes them two to three times the target's size along
each axis. Inside that box, each plane's probability is estimated on a grid of half a coarse step: from its nearest
probed slice (within half a step along its normal) and the probe at the nearest pixel; the weighted mean over the
planes is thresholded somewhat below the mask threshold, and the box around that region, grown by one coarse step
and two voxels on each side, is what the fine pass decodes.
"""

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from .decode import VolumeDecode
from .fusion import PLANE_TO_CANONICAL, Box, edge_factors
from .volume import PreparedVolume

#: canonical array axes (S 0, P 1, L 2) of each plane: its normal, its slice rows, its slice columns
PLANE_AXES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
#: the estimate is thresholded at this fraction of the mask threshold (bank validation: 0.85 and 1.0 lose nothing)
SLACK = 0.85


def _grid(lo: int, hi: int, cell: int) -> np.ndarray:
    """Voxel positions at the centres of ``cell``-voxel cells across [lo, hi)."""
    return np.minimum(np.arange(lo, hi, cell) + cell // 2, hi - 1)


def plane_estimate(
    volume: PreparedVolume, plane: str, dec: VolumeDecode, probed: Sequence[int], gate: float, stride: int, grid
) -> np.ndarray:
    """(len(grid[0]), len(grid[1]), len(grid[2])) probabilities of ``plane`` at the canonical grid points ``grid``
    (S, P, L positions): the nearest probed slice within half a ``stride``, the nearest model pixel; else 0."""
    view = volume.view(plane)
    n_ax, r_ax, c_ax = PLANE_AXES[plane]
    ks, rows, cols = grid[n_ax], grid[r_ax], grid[c_ax]
    if plane != "axial":
        rows = volume.canonical.shape[0] - 1 - rows  # slice rows run from the top
    out = np.zeros((len(ks), len(rows), len(cols)), dtype=np.float32)
    probed = np.asarray(sorted(probed), dtype=int)
    if probed.size:
        j = np.clip(np.searchsorted(probed, ks), 1, max(1, probed.size - 1))
        left, right = probed[np.maximum(j - 1, 0)], probed[np.minimum(j, probed.size - 1)]
        nearest = np.where(np.abs(ks - left) <= np.abs(right - ks), left, right)
        ok = (np.abs(nearest - ks) * 2 <= stride) & (dec.presence[torch.as_tensor(nearest)].float().numpy() >= gate)
        if ok.any():
            ys, xs = view.fit.to_model(rows.astype(float), cols.astype(float))
            size = dec.logits.shape[-1]
            ys = torch.as_tensor(np.clip(np.rint(ys), 0, size - 1).astype(np.int64))
            xs = torch.as_tensor(np.clip(np.rint(xs), 0, size - 1).astype(np.int64))
            logits = dec.logits[torch.as_tensor(nearest[ok])][:, ys][:, :, xs].float()
            out[ok] = torch.sigmoid(logits).numpy()
    return np.transpose(out, PLANE_TO_CANONICAL[plane])


def estimate_box(
    volume: PreparedVolume,
    decodes: Mapping[str, VolumeDecode],
    probed: Mapping[str, Sequence[int]],
    gate: float,
    weights: Mapping[str, float],
    threshold: float,
    strides: Mapping[str, int],
    within: Box,
) -> Optional[Box]:
    """The box around where the coarse estimate of the fused probability reaches ``SLACK * threshold`` inside
    ``within``, grown by a coarse step and two voxels (clipped to ``within``); None when it reaches it nowhere."""
    normal_stride = {PLANE_AXES[p][0]: int(s) for p, s in strides.items()}
    step = [normal_stride.get(a, max(normal_stride.values())) for a in range(3)]
    grid = [_grid(lo, hi, max(1, s // 2)) for (lo, hi), s in zip(within, step)]
    spacing = tuple(volume.canonical_spacing[::-1])
    cuts = volume.cut_ends
    fields = {
        p: float(weights.get(p, 1.0)) * edge_factors(volume.canonical.shape, spacing, p, grid, cuts) for p in decodes
    }
    if not fields:
        return None
    total = sum(fields.values())
    fused = sum(
        plane_estimate(volume, p, dec, probed[p], gate, strides[p], grid) * (fields[p] / total)
        for p, dec in decodes.items()
    )
    hit = fused >= SLACK * threshold
    if not hit.any():
        return None
    box = []
    for axis in range(3):
        along = np.flatnonzero(hit.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = within[axis]
        grow = step[axis] + 2
        box.append((max(lo, int(grid[axis][along[0]]) - grow), min(hi, int(grid[axis][along[-1]]) + 1 + grow)))
    return box[0], box[1], box[2]


__all__ = ["estimate_box", "plane_estimate"]
