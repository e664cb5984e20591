"""Decoded slices of one plane, presence gating, and the 3D clean-up of a mask.

Absent slices (presence logit below the threshold) skip the mask upscaling and are empty. The clean-up fills holes
slice by slice and removes 3D components that are smaller than ``min_component_ml`` or supported by fewer than
``min_slices`` slices. Which slices are decoded, and how planes are fused, is in :mod:`multiview`.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ..imaging import SliceFit
from .embeddings import SliceEmbeddings


def prob_to_logit(p: float) -> float:
    """Probability -> logit; 0 -> -inf and 1 -> +inf (so thresholds can force everything in or out)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


@dataclass
class VolumeDecode:
    """Model-resolution mask logits (N, S, S) fp16, presence logits (N,) and predicted IoU (N,) of every slice;
    ``region``: the canonical box that was decoded finely (outside it the logits are coarse or missing), when known.
    """

    logits: torch.Tensor
    presence: torch.Tensor
    iou: torch.Tensor
    region: Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = None


def slice_images(model: torch.nn.Module, embeddings: SliceEmbeddings, indices: Sequence[int]):
    """The model inputs of ``indices`` when the model's decoder uses the image (``detail_channels``), else None."""
    if not getattr(model.config, "detail_channels", 0):  # type: ignore[attr-defined]
        return None
    return embeddings.images(indices)


def upscale_masks(
    logits: torch.Tensor, fit: SliceFit, mask_threshold: float = 0.5, present: Optional[np.ndarray] = None
) -> np.ndarray:
    """(N, S, S) model logits -> (N, H, W) bool masks at slice resolution; slices not ``present`` stay empty."""
    n = logits.shape[0]
    out = np.zeros((n, fit.height, fit.width), dtype=bool)
    thr = prob_to_logit(mask_threshold)
    idx = np.arange(n) if present is None else np.flatnonzero(present)
    for s in range(0, len(idx), 16):
        part = idx[s : s + 16]
        if not len(part):
            continue
        up = fit.to_slices(logits[torch.as_tensor(part)].float())
        out[part] = (up > thr).numpy()
    return out


#: background 4-connectivity within a slice and none across slices: every slice is filled on its own, in one call
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = [[False, True, False], [True, True, True], [False, True, False]]


def fill_holes_2d(mask: np.ndarray, slices: Optional[Sequence[int]] = None) -> np.ndarray:
    """Fill holes slice by slice (in place) on ``slices`` (all by default); holes are background regions not
    4-connected to the slice border.

    Example:
        >>> m = np.zeros((1, 5, 5), bool); m[0, 1:4, 1:4] = True; m[0, 2, 2] = False
        >>> int(fill_holes_2d(m).sum())
        9
    """
    idx = np.arange(mask.shape[0]) if slices is None else np.asarray(list(slices), dtype=int)
    idx = idx[mask[idx].reshape(len(idx), -1).any(axis=1)] if len(idx) else idx
    if len(idx):
        # one labelling of the background, 4-connected within each slice (a quarter of the time of scipy's
        # binary_fill_holes, which dilates from the border until nothing changes); a background region that does
        # not reach a slice's edge is a hole
        block = mask[idx]
        labels, count = ndimage.label(~block, structure=_IN_PLANE)
        outside = np.zeros(count + 1, dtype=bool)
        for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
            outside[np.unique(edge)] = True
        outside[0] = True  # the mask itself
        mask[idx] = block | ~outside[labels]
    return mask


def cleanup_3d(
    mask: np.ndarray,
    voxel_ml: float,
    min_component_ml: float = 0.0,
    min_slices: int = 2,
    fill_holes: bool = True,
    largest_only: bool = False,
    min_fraction: float = 0.0,
    _n: Optional[int] = None,
) -> np.ndarray:
    """3D clean-up of a (N, H, W) bool stack (slice axis first): holes filled slice by slice, then 3D components
    removed that are smaller than ``min_component_ml``, span fewer than ``min_slices`` slices, or hold less than
    ``min_fraction`` of the largest remaining component's voxels (stray islands of a single structure; a bilateral
    group's two halves are of a size); ``largest_only`` keeps one.

    Example:
        >>> m = np.zeros((5, 8, 8), bool); m[1:4, 2:6, 2:6] = True; m[0, 0, 0] = True
        >>> int(cleanup_3d(m, voxel_ml=0.001, min_slices=2).sum())
        48
    """
    if not mask.any():
        return mask
    # work on the bounding box of the mask only (small structures in big volumes)
    box = tuple(slice(int(np.flatnonzero(a)[0]), int(np.flatnonzero(a)[-1]) + 1) for a in _projections(mask))
    if any(b.stop - b.start < n for b, n in zip(box, mask.shape)):
        out = np.zeros_like(mask)
        out[box] = cleanup_3d(
            mask[box], voxel_ml, min_component_ml, min_slices, fill_holes, largest_only, min_fraction, mask.shape[0]
        )
        return out
    mask = fill_holes_2d(mask.copy()) if fill_holes else mask.copy()
    min_slices = max(1, min(int(min_slices), _n or mask.shape[0]))
    if min_component_ml <= 0 and min_slices <= 1 and not largest_only and min_fraction <= 0:
        return mask
    # 26-connected components, labelled in raster order (a view of the filter's output: no copy)
    image = sitk.ConnectedComponent(sitk.GetImageFromArray(np.ascontiguousarray(mask).view(np.uint8)), True)
    labels = sitk.GetArrayViewFromImage(image)
    count = int(labels.max())
    if count == 0:
        return mask
    sizes = np.bincount(labels[mask], minlength=count + 1)  # the mask's voxels only (a CT skull: 6 vs 22 ms)
    boxes = ndimage.find_objects(labels)
    keep = np.zeros(count + 1, dtype=bool)
    for lab, where in enumerate(boxes, start=1):
        span = where[0].stop - where[0].start if where is not None else 0  # extent along the slice axis
        keep[lab] = sizes[lab] * voxel_ml >= min_component_ml and span >= min_slices
    if min_fraction > 0 and keep[1:].any():
        keep &= sizes >= min_fraction * sizes[keep].max()
    if largest_only and keep[1:].any():
        best = int(np.argmax(np.where(keep, sizes, -1)))
        keep[:] = False
        keep[best] = True
    # clear the dropped components inside their own boxes (stray islands are small) instead of a pass over all
    for lab in np.flatnonzero(~keep[1:]) + 1:
        where = boxes[lab - 1]
        if where is not None:
            part = mask[where]
            part[labels[where] == lab] = False
    return mask


def _projections(mask: np.ndarray) -> List[np.ndarray]:
    return [mask.any(axis=(1, 2)), mask.any(axis=(0, 2)), mask.any(axis=(0, 1))]


def confidence_of(presence: Dict[str, torch.Tensor], mask: np.ndarray) -> float:
    """Segment confidence: per plane, the mean presence probability over the slices holding the final (canonical)
    mask, averaged over the planes; when nothing was found, the highest presence probability of any slice (how close
    the target came to being found)."""
    from .volume import slice_view

    means, best = [], 0.0
    for plane, logits in presence.items():
        prob = torch.sigmoid(logits.float()).numpy()
        if prob.size:
            best = max(best, float(prob.max()))
        occupied = slice_view(mask, plane).any(axis=(1, 2))
        if occupied.any():
            means.append(float(prob[occupied].mean()))
    return float(np.mean(means)) if means else best
