"""One prompt along several planes: decode coarse to fine where the target can be, then fuse into one mask.

1. Coarse pass: every plane decodes every ``stride``-th slice (about every 6 mm by default).
2. The target's box: where the fused probability can reach the mask threshold, from the boxes around what each
   plane's coarse slices found (:func:`target_box`): a region only one plane finds cannot pass the weighted mean.
3. Fine pass: every plane decodes the slices across the box not decoded yet (a single plane also ``stride - 1``
   beyond it: alone it knows the target's extent along its normal only to a coarse step); slices outside stay absent.
   One slice is decoded per model pixel along the normal (:func:`fine_stride`; per two pixels when several planes
   are fused, as the other planes resolve that axis), e.g. 0.7 mm coronal slices of a CT whose coronal slices the
   model sees at 3.5 mm pixels are decoded every 3.5 mm; the slices in between are interpolated.
4. Fusion inside the box (:mod:`fusion`), threshold, 3D clean-up of the box only.
"""

from itertools import combinations
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..model import TextEmbedding
from ..model.mask_decoder import ABSENT_LOGIT
from .batching import Batcher, CancelFn, ProgressFn
from .decode import VolumeDecode, cleanup_3d, prob_to_logit, slice_images
from .embeddings import SliceEmbeddings
from .fusion import Box, _view_ranges, fuse, union_box, view_box, view_probabilities
from .volume import AXIS_NORMAL, PlaneView, PreparedVolume, slice_pixel_spacing

COARSE_MM = 6.0


def auto_stride(view: PlaneView, mm: float = COARSE_MM) -> int:
    """Slices between two coarse samples: about ``mm`` millimetres along the plane's normal."""
    spacing = view.volume.canonical_spacing[AXIS_NORMAL[view.plane]]
    return max(1, int(round(mm / max(spacing, 1e-6))))


def fine_stride(view: PlaneView, pixels: float = 1.0) -> int:
    """Slices between two fine samples: the model sees a slice with pixels of ``pixel_mm``; decoding slices closer
    than ``pixels`` of them along the normal adds little detail (e.g. coronal slices 0.7 mm apart of a CT shown at
    3.5 mm pixels). With several planes the other planes see this normal at full resolution, so every second pixel
    is enough there (``fine_pixels``). The slices in between are interpolated."""
    spacing = view.volume.canonical_spacing[AXIS_NORMAL[view.plane]]
    row_mm, col_mm = slice_pixel_spacing(view.volume.canonical_spacing, view.plane)
    pixel_mm = max(view.height * row_mm / max(view.fit.h, 1), view.width * col_mm / max(view.fit.w, 1))
    return max(1, int(pixels * pixel_mm / max(spacing, 1e-6)))


def interpolate(found: Dict[int, tuple], lo: int, hi: int) -> None:
    """Fill slices lo..hi-1 missing from ``found`` by linear interpolation between their decoded neighbours."""
    known = sorted(k for k in found if lo <= k < hi)
    for a, b in zip(known[:-1], known[1:]):
        for k in range(a + 1, b):
            t = (k - a) / (b - a)
            la, pa, ia = found[a]
            lb, pb, ib = found[b]
            logits = (la.float() * (1 - t) + lb.float() * t).to(torch.float16)
            found[k] = (logits, pa * (1 - t) + pb * t, ia * (1 - t) + ib * t)


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


def _intersect(boxes: Sequence[Box]) -> Optional[Box]:
    out = tuple((max(b[a][0] for b in boxes), min(b[a][1] for b in boxes)) for a in range(3))
    return out if all(lo < hi for lo, hi in out) else None  # type: ignore[return-value]


def target_box(
    volume: PreparedVolume,
    decodes: Mapping[str, VolumeDecode],
    gate: float,
    weights: Mapping[str, float],
    threshold: float = 0.5,
) -> Optional[Box]:
    """Where the fused probability can reach ``threshold``: the union, over every set of planes whose fusion
    weights reach it, of the intersection of their boxes. A region only one plane finds (with weights 0.4/0.4/0.2:
    at most 0.4) cannot become part of the mask, so it costs no fine decoding and no resampling. This also takes a
    sided prompt's side from the axial and coronal planes: the sagittal plane (0.2) answers on both hemispheres."""
    boxes = {p: view_box(volume.view(p), d, gate) for p, d in decodes.items()}
    total = sum(float(weights.get(p, 1.0)) for p in boxes) or 1.0
    found = [p for p, b in boxes.items() if b is not None]
    regions = []
    for r in range(1, len(found) + 1):
        for subset in combinations(found, r):
            if sum(float(weights.get(p, 1.0)) for p in subset) / total + 1e-9 >= threshold:
                regions.append(_intersect([boxes[p] for p in subset]))  # type: ignore[misc]
    return union_box(regions)


def decode_views(
    model: torch.nn.Module,
    volume: PreparedVolume,
    embeddings: Mapping[str, SliceEmbeddings],
    text: TextEmbedding,
    batcher: Batcher,
    opts: Mapping[str, Any],
    progress: ProgressFn = None,
    cancel: CancelFn = None,
    start: float = 0.0,
    span: float = 1.0,
) -> Dict[str, VolumeDecode]:
    """Coarse-to-fine decoding of every plane of ``embeddings`` (see the module docstring); ``opts``: the segment
    options (``presence_threshold``, ``mask_threshold``, ``slice_stride``, ``fine_pixels``, ``view_weights``)."""
    gate = prob_to_logit(opts["presence_threshold"])
    slice_stride = opts["slice_stride"]
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
    coarse = {p: assemble(found[p], views[p].num_slices, size) for p in planes}
    box = target_box(volume, coarse, gate, opts["view_weights"], opts["mask_threshold"])
    fine_pixels = opts.get("fine_pixels") or (1 if len(planes) == 1 else 2)
    if box is not None:
        for p in planes:
            (k0, k1), _, _ = _view_ranges(views[p], box)
            # one plane alone knows its extent along its normal only to a coarse step; with several planes the
            # others' in-plane extents bound it to the voxel (the box already has a margin)
            ext = strides[p] - 1 if len(planes) == 1 else 0
            lo, hi = max(0, k0 - ext), min(views[p].num_slices, k1 + ext)
            step = fine_stride(views[p], fine_pixels)
            wanted = set(range(lo, hi, step)) | ({hi - 1} if hi > lo else set())
            fine = sorted(k for k in wanted if k not in found[p])
            share = span * 0.5 * views[p].num_slices / total
            if fine:
                found[p].update(
                    decode_slices(model, embeddings[p], text, batcher, gate, fine, progress, cancel, pos, share)
                )
            if step > 1:
                interpolate(found[p], lo, hi)
            pos += share
    return {p: assemble(found[p], views[p].num_slices, size) for p in planes}


def fuse_views(volume: PreparedVolume, decodes: Mapping[str, VolumeDecode], opts: Mapping[str, Any]) -> np.ndarray:
    """The canonical mask: the planes' probabilities fused inside the target's box, thresholded, cleaned up."""
    gate = prob_to_logit(opts["presence_threshold"])
    mask = np.zeros(volume.canonical.shape, dtype=bool)
    box = target_box(volume, decodes, gate, opts["view_weights"], opts["mask_threshold"])
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
