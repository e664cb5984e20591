"""One prompt along several planes: decode coarse to fine where the target can be, then fuse into one mask.

1. Coarse pass: every plane decodes every ``stride``-th slice (about every 6 mm by default).
2. The target's box: the canonical box around what the coarse slices found (:func:`fusion.view_box`). A sagittal
   slice shows no side, so for a sided prompt ("left putamen") the box comes from the other planes when they found
   something (the sagittal view answers on both hemispheres).
3. Fine pass: every plane decodes the slices across the box not decoded yet (a single plane also ``stride - 1``
   beyond it: alone it knows the target's extent along its normal only to a coarse step); slices outside stay absent.
4. Fusion inside the box (:mod:`fusion`), threshold, 3D clean-up of the box only.
"""

from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import torch

from ..model import TextEmbedding
from ..model.mask_decoder import ABSENT_LOGIT
from .batching import Batcher, CancelFn, ProgressFn
from .decode import VolumeDecode, cleanup_3d, prob_to_logit, slice_images
from .embeddings import SliceEmbeddings
from .fusion import Box, _view_ranges, fuse, union_box, view_box, view_probabilities
from .volume import AXIS_NORMAL, PlaneView, PreparedVolume

COARSE_MM = 6.0


def auto_stride(view: PlaneView, mm: float = COARSE_MM) -> int:
    """Slices between two coarse samples: about ``mm`` millimetres along the plane's normal."""
    spacing = view.volume.canonical_spacing[AXIS_NORMAL[view.plane]]
    return max(1, int(round(mm / max(spacing, 1e-6))))


def decode_slices(
    model: torch.nn.Module,
    embeddings: SliceEmbeddings,
    text: TextEmbedding,
    batcher: Batcher,
    gate: float,
    indices: List[int],
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    start: float = 0.0,
    span: float = 1.0,
) -> Dict[int, tuple]:
    """{slice: (logits (S, S) fp16, presence logit, IoU)} for ``indices``; absent slices skip the upscaling."""

    def run(batch: List[int]) -> List[tuple]:
        out = model.decode(  # type: ignore[operator]
            embeddings.get(batch),
            text=text,
            presence_threshold=gate,
            images=slice_images(model, embeddings, batch),
        )
        logits = out.masks[:, 0].to("cpu", torch.float16)
        return list(zip(logits, out.presence[:, 0].cpu(), out.iou[:, 0].cpu()))

    return dict(zip(indices, batcher.run(run, indices, progress, cancel, "decoding", start, span)))


def assemble(found: Mapping[int, tuple], n: int, size: int) -> VolumeDecode:
    """A :class:`VolumeDecode` of all ``n`` slices; slices never decoded are absent."""
    logits = torch.full((n, size, size), ABSENT_LOGIT, dtype=torch.float16)
    presence = torch.full((n,), ABSENT_LOGIT)
    iou = torch.zeros(n)
    for k, (lg, pr, io) in found.items():
        logits[k], presence[k], iou[k] = lg, pr, io
    return VolumeDecode(logits, presence, iou)


def target_box(volume: PreparedVolume, decodes: Mapping[str, VolumeDecode], gate: float, sided: bool) -> Optional[Box]:
    """Union of the planes' boxes; for a sided prompt without the sagittal plane when another plane found it."""
    boxes = {p: view_box(volume.view(p), d, gate) for p, d in decodes.items()}
    if sided and "sagittal" in boxes and any(b is not None for p, b in boxes.items() if p != "sagittal"):
        boxes.pop("sagittal")
    return union_box(list(boxes.values()))


def decode_views(
    model: torch.nn.Module,
    volume: PreparedVolume,
    embeddings: Mapping[str, SliceEmbeddings],
    text: TextEmbedding,
    batcher: Batcher,
    presence_threshold: float,
    slice_stride: Optional[int],
    sided: bool,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    start: float = 0.0,
    span: float = 1.0,
) -> Dict[str, VolumeDecode]:
    """Coarse-to-fine decoding of every plane of ``embeddings`` (see the module docstring)."""
    gate = prob_to_logit(presence_threshold)
    size = model.config.image_size  # type: ignore[attr-defined]
    planes = list(embeddings)
    views = {p: volume.view(p) for p in planes}
    strides = {p: max(1, int(slice_stride)) if slice_stride else auto_stride(views[p]) for p in planes}
    found: Dict[str, Dict[int, tuple]] = {}
    total = sum(v.num_slices for v in views.values())
    pos = start
    for p in planes:
        n = views[p].num_slices
        coarse = list(range(0, n, strides[p]))
        if coarse[-1] != n - 1:
            coarse.append(n - 1)
        share = span * 0.5 * n / total
        found[p] = decode_slices(model, embeddings[p], text, batcher, gate, coarse, progress, cancel, pos, share)
        pos += share
    box = target_box(volume, {p: assemble(found[p], views[p].num_slices, size) for p in planes}, gate, sided)
    if box is not None:
        for p in planes:
            (k0, k1), _, _ = _view_ranges(views[p], box)
            # one plane alone knows its extent along its normal only to a coarse step; with several planes the
            # others' in-plane extents bound it to the voxel (the box already has a margin)
            ext = strides[p] - 1 if len(planes) == 1 else 0
            lo, hi = max(0, k0 - ext), min(views[p].num_slices, k1 + ext)
            fine = [k for k in range(lo, hi) if k not in found[p]]
            share = span * 0.5 * views[p].num_slices / total
            if fine:
                found[p].update(
                    decode_slices(model, embeddings[p], text, batcher, gate, fine, progress, cancel, pos, share)
                )
            pos += share
    return {p: assemble(found[p], views[p].num_slices, size) for p in planes}


def fuse_views(
    volume: PreparedVolume, decodes: Mapping[str, VolumeDecode], opts: Mapping[str, Any], sided: bool
) -> np.ndarray:
    """The canonical mask: the planes' probabilities fused inside the target's box, thresholded, cleaned up."""
    gate = prob_to_logit(opts["presence_threshold"])
    mask = np.zeros(volume.canonical.shape, dtype=bool)
    box = target_box(volume, decodes, gate, sided)
    if box is None:
        return mask
    blocks = {p: view_probabilities(volume.view(p), d, box, gate) for p, d in decodes.items()}
    region = tuple(slice(lo, hi) for lo, hi in box)
    block = fuse(blocks, opts["view_weights"]) >= opts["mask_threshold"]
    mask[region] = cleanup_3d(
        block,
        volume.voxel_ml,
        opts["min_component_ml"],
        opts["min_slices"],
        opts["fill_holes"],
        opts["largest_only"],
        _n=volume.canonical.shape[0],
    )
    return mask


__all__ = ["auto_stride", "decode_views", "fuse_views", "target_box"]
