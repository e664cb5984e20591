"""One prompt along several planes: decode coarse to fine where the target can be, then fuse into one mask.

1. Coarse pass: every plane decodes every ``stride``-th slice (about every 6 mm by default), probing the mask at one
   pixel of each 4 x 4 block (``probe``: a 16th of the upscaling; these slices are decoded again, exactly, when they
   fall in the box). A voxel needs planes
   whose weights reach the mask threshold; when every such set holds one of the other planes, the plane with the
   smallest weight is decoded only across the other planes' boxes (with 0.4/0.4/0.2: sagittal slices only where
   the axial or the coronal plane found something).
2. The target's box: where the fused probability can reach the mask threshold, from the boxes around what each
   plane's coarse slices found (:func:`target_box`): a region only one plane finds cannot pass the weighted mean.
   With several planes, inside it, where the fused probability estimated from the coarse slices comes near the
   threshold, plus a coarse step (:mod:`estimate`).
3. Fine pass: every plane decodes the slices across the box not decoded yet (a single plane also ``stride - 1``
   beyond it: alone it knows the target's extent along its normal only to a coarse step); slices outside stay absent.
   One slice is decoded per model pixel along the normal (:func:`fine_stride`; per two pixels when several planes
   are fused, as the other planes resolve that axis), e.g. 0.7 mm coronal slices of a CT whose coronal slices the
   model sees at 3.5 mm pixels are decoded every 3.5 mm; the slices in between are interpolated. Only the box's
   part of each fine slice is upscaled to the model's resolution (``crop``: the same logits there).
4. Fusion inside the box (:mod:`fusion`; the box is the decoded ``region``), threshold, 3D clean-up of the box only.
"""

from itertools import combinations
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..model import TextEmbedding
from ..model.mask_decoder import ABSENT_LOGIT, Crop
from .batching import Batcher, CancelFn, ProgressFn
from .belief import Belief
from .decode import VolumeDecode, cleanup_3d, prob_to_logit, slice_images
from .embeddings import SliceEmbeddings
from .estimate import estimate_box
from .fusion import (
    Box,
    _canonical_box,
    _view_ranges,
    box_edge_factors,
    edge_zone,
    fuse,
    union_box,
    view_box,
    view_probabilities,
)
from .trim import trim_outliers
from .volume import AXIS_NORMAL, PlaneView, PreparedVolume, slice_pixel_spacing

COARSE_MM = 6.0
#: model pixels added around what probed masks find: a target's edge lies within a block (4 pixels) of a probe
PROBE_PAD = 2.0


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
    fit = view.fit
    pixel_mm = max(fit.padded_height * row_mm / max(fit.h, 1), fit.padded_width * col_mm / max(fit.w, 1))
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
    crop: Optional[Crop] = None,
    probe: bool = False,
) -> Dict[int, tuple]:
    """{slice: (logits (S, S) fp16, presence logit, IoU)} for ``indices``; absent slices skip the upscaling, and
    with ``crop`` (y0, y1, x0, x1 model pixels) present ones upscale only that part (the rest is absent); with
    ``probe`` only one pixel per 4 x 4 block (see ``TextSegmentModel.decode``)."""

    def run(batch: List[int]) -> List[tuple]:
        out = model.decode(  # type: ignore[operator]
            embeddings.get(batch),
            text=text,
            presence_threshold=gate,
            images=slice_images(model, embeddings, batch),
            crop=crop,
            probe=probe,
        )
        logits = out.masks[:, 0].to("cpu", torch.float16)
        return list(zip(logits, out.presence[:, 0].cpu(), out.iou[:, 0].cpu()))

    return dict(zip(indices, batcher.run(run, indices, progress, cancel, "decoding", start, span)))


def absent_logits(shape: Tuple[int, ...]) -> torch.Tensor:
    """An fp16 tensor of ``ABSENT_LOGIT``, filled as its 16-bit pattern (filling fp16 itself is five times slower).

    Example:
        >>> absent_logits((2, 3)).unique().tolist() == [ABSENT_LOGIT]
        True
    """
    bits = int(torch.tensor(ABSENT_LOGIT, dtype=torch.float16).view(torch.int16))
    return torch.full(shape, bits, dtype=torch.int16).view(torch.float16)


def assemble(found: Mapping[int, tuple], n: int, size: int) -> VolumeDecode:
    """A :class:`VolumeDecode` of all ``n`` slices; slices never decoded are absent."""
    logits = absent_logits((n, size, size))
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
    pad: float = 0.0,
) -> Optional[Box]:
    """Where the fused probability can reach ``threshold``: the union, over every set of planes whose fusion
    weights reach it, of the intersection of their boxes. A region only one plane finds (with weights 0.4/0.4/0.2:
    at most 0.4) cannot become part of the mask, so it costs no fine decoding and no resampling. This also takes a
    sided prompt's side from the axial and coronal planes: the sagittal plane (0.2) answers on both hemispheres."""
    boxes = {p: view_box(volume.view(p), d, gate, pad=pad) for p, d in decodes.items()}
    total = sum(float(weights.get(p, 1.0)) for p in boxes) or 1.0
    found = [p for p, b in boxes.items() if b is not None]
    regions = []
    for r in range(1, len(found) + 1):
        for subset in combinations(found, r):
            if sum(float(weights.get(p, 1.0)) for p in subset) / total + 1e-9 >= threshold:
                regions.append(_intersect([boxes[p] for p in subset]))  # type: ignore[misc]
    if len(boxes) > 1:  # near an edge that cuts the other views' slices one view may carry the mask alone
        for p in found:
            regions.extend(edge_zone(volume, p, boxes[p]))  # type: ignore[arg-type]
    return union_box(regions)


def model_crop(view: PlaneView, rows: Tuple[int, int], cols: Tuple[int, int], margin: int = 3) -> Crop:
    """Model pixels (y0, y1, x0, x1) that the slice pixels ``rows`` x ``cols`` of ``view`` are resampled from,
    plus ``margin`` (bilinear neighbours and a little room)."""
    ys, xs = view.fit.to_model(np.array([rows[0] - 1.0, rows[1]]), np.array([cols[0] - 1.0, cols[1]]))
    size = view.fit.size
    y0, y1 = max(0, int(np.floor(ys[0])) - margin), min(size, int(np.ceil(ys[1])) + margin + 1)
    x0, x1 = max(0, int(np.floor(xs[0])) - margin), min(size, int(np.ceil(xs[1])) + margin + 1)
    return y0, y1, x0, x1


def _lightest_needed_elsewhere(planes: Sequence[str], weights: Mapping[str, float], threshold: float) -> Optional[str]:
    """The plane with the smallest weight when no set of planes that reaches ``threshold`` of the total weight
    leaves out all the others (then its voxels always need another plane's box), else None."""
    if len(planes) < 3:
        return None
    w = {p: float(weights.get(p, 1.0)) for p in planes}
    total = sum(w.values()) or 1.0
    light = min(planes, key=lambda p: (w[p], planes.index(p)))
    return None if w[light] / total + 1e-9 >= threshold else light


def _coarse(n: int, stride: int, within: Optional[Tuple[int, int]] = None) -> List[int]:
    """Every ``stride``-th slice and the last one; only those inside ``within`` (lo, hi) when given."""
    out = list(range(0, n, stride))
    if out[-1] != n - 1:
        out.append(n - 1)
    if within is not None:
        lo, hi = within
        out = [k for k in out if lo - stride < k < hi + stride]
    return out


def _fine(lo: int, hi: int, step: int, probed: Sequence[int]) -> List[int]:
    """Slices lo..hi-1 to decode exactly: the probed ones in it, its ends, and every ``step``-th in between.

    Example:
        >>> _fine(3, 20, 4, [0, 6, 12, 18, 24])
        [3, 6, 10, 12, 16, 18, 19]
    """
    if hi <= lo:
        return []
    anchors = sorted({k for k in probed if lo <= k < hi} | {lo, hi - 1})
    out = set(anchors)
    for a, b in zip(anchors[:-1], anchors[1:]):
        out.update(range(a + step, b, step))
    return sorted(out)


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
    probed: Dict[str, List[int]] = {}
    total = sum(v.num_slices for v in views.values())
    pos = start
    weights, threshold = opts["view_weights"], opts["mask_threshold"]
    last = _lightest_needed_elsewhere(planes, weights, threshold)
    for p in sorted(planes, key=lambda q: q == last):  # the lightest plane last: it needs the others' boxes
        n = views[p].num_slices
        within: Optional[Tuple[int, int]] = (0, 0)
        if p == last:
            others = {q: assemble(found[q], views[q].num_slices, size) for q in found}
            union = union_box([view_box(views[q], d, gate, pad=PROBE_PAD) for q, d in others.items()])
            within = _view_ranges(views[p], union)[0] if union is not None else None
        probed[p] = _coarse(n, strides[p], within if p == last else None) if within is not None else []
        share = span * 0.5 * n / total
        found[p] = decode_slices(
            model, embeddings[p], text, batcher, gate, probed[p], progress, cancel, pos, share, probe=True
        )
        pos += share
    coarse_decodes = {p: assemble(found[p], views[p].num_slices, size) for p in planes}
    box = target_box(volume, coarse_decodes, gate, weights, threshold, pad=PROBE_PAD)
    if box is not None and len(planes) > 1:  # where the planes' coarse findings agree, not only their boxes
        box = estimate_box(volume, coarse_decodes, probed, gate, weights, threshold, strides, box) or box
    fine_pixels = opts.get("fine_pixels") or (1 if len(planes) == 1 else 2)
    regions: List[Box] = []
    if box is not None:
        for p in planes:
            (k0, k1), rows, cols = _view_ranges(views[p], box)
            # one plane alone knows its extent along its normal only to a coarse step; with several planes the
            # others' in-plane extents bound it to the voxel (the box already has a margin)
            ext = strides[p] - 1 if len(planes) == 1 else 0
            lo, hi = max(0, k0 - ext), min(views[p].num_slices, k1 + ext)
            regions.append(_canonical_box(views[p], (lo, hi), rows, cols))
            step = fine_stride(views[p], fine_pixels)
            fine = _fine(lo, hi, step, probed[p])
            share = span * 0.5 * views[p].num_slices / total
            if fine:
                crop = model_crop(views[p], rows, cols)
                found[p].update(
                    decode_slices(model, embeddings[p], text, batcher, gate, fine, progress, cancel, pos, share, crop)
                )
            if step > 1:
                interpolate(found[p], lo, hi)
            pos += share
    region = union_box(regions)
    out = {p: assemble(found[p], views[p].num_slices, size) for p in planes}
    for d in out.values():
        d.region = region
    return out


def fused_belief(
    volume: PreparedVolume, decodes: Mapping[str, VolumeDecode], opts: Mapping[str, Any]
) -> Optional[Belief]:
    """The planes' probabilities fused inside the target's box, float32 (None when no plane found the target)."""
    gate = prob_to_logit(opts["presence_threshold"])
    regions = {d.region for d in decodes.values()} - {None}
    if regions:  # decoded by decode_views: fuse where its fine pass decoded
        box = union_box(list(regions))
    else:
        box = target_box(volume, decodes, gate, opts["view_weights"], opts["mask_threshold"])
    if box is None:
        return None
    blocks = {p: view_probabilities(volume.view(p), d, box, gate, contiguous=False) for p, d in decodes.items()}
    factors = box_edge_factors(volume, list(blocks), box)
    prob = fuse(blocks, opts["view_weights"], factors)
    return Belief(tuple((int(lo), int(hi)) for lo, hi in box), prob.astype(np.float32))  # type: ignore[arg-type]


def belief_mask(volume: PreparedVolume, belief: Optional[Belief], opts: Mapping[str, Any]) -> np.ndarray:
    """The canonical mask of a fused probability: thresholded at ``mask_threshold``, cleaned up in its box, and its
    edge trimmed of outliers with ``trim_outliers`` > 0 (an MR volume only: :mod:`.trim`)."""
    mask = np.zeros(volume.canonical.shape, dtype=bool)
    if belief is None:
        return mask
    region = tuple(slice(lo, hi) for lo, hi in belief.box)
    mask[region] = cleanup_3d(
        belief.prob >= opts["mask_threshold"],
        volume.voxel_ml,
        opts["min_component_ml"],
        opts["min_slices"],
        opts["fill_holes"],
        opts["largest_only"],
        opts["min_component_fraction"],
        _n=volume.canonical.shape[0],
    )
    if opts.get("trim_outliers") and not volume.is_ct:
        mask[region] = trim_outliers(volume.canonical[region], mask[region], float(opts["trim_outliers"]))
    return mask


def stored(belief: Optional[Belief]) -> Optional[Belief]:
    """A belief as a result keeps it: float16."""
    return None if belief is None else Belief(belief.box, belief.prob.astype(np.float16))


__all__ = ["auto_stride", "belief_mask", "decode_views", "fused_belief", "stored", "target_box"]
