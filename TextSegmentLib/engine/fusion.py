"""Three-view fusion: each plane's model-resolution mask logits, mapped back onto the canonical grid and averaged.

Only the target's bounding box is ever built at the volume's resolution: each view's present slices and their
above-``level`` pixels give a box in canonical ``(S, P, L)`` voxels, the union of the views' boxes (plus a margin) is
where probabilities are resampled (bilinear from the model-resolution logits, exactly as ``SliceFit.to_slices``
would, but only for the voxels inside the box) and fused. Slices a view found absent contribute probability 0.

Fusion is the weighted mean of the views' probabilities (FastSurfer's view aggregation; its weights are axial 0.4,
coronal 0.4, sagittal 0.2, renormalised over the views used). A sagittal slice shows no left or right, so a model
trained as FastSurfer's sagittal network answers a sided prompt on both hemispheres: with these weights its 0.2
alone never reaches 0.5, and the side comes from the axial and coronal views.

A view is not trusted where the volume's field of view cuts its slices: within ``EDGE_MM`` of the volume's edge
along one of a view's in-plane axes the view sees a structure cut off by the edge of its image (a scan that ends at
the thalamus shows coronal and sagittal slices that end there), while the view whose slices are parallel to that
edge sees the structure whole. Only an edge that cuts through the body counts (``PreparedVolume.cut_ends``: more
than 10 % of the volume's two outermost slices there is foreground): a field of view with air or background at an end
is whole there. Each view's weight is multiplied there by a ramp (distance to that edge / ``EDGE_MM``, at least
``EDGE_FLOOR`` = 0.25), separably along its two in-plane axes, and the weights are renormalised per voxel. A
structure farther than ``EDGE_MM`` from every edge (the deep grey structures of a whole-head scan lie 50-80 mm from
it) is fused exactly as before. Where a view's slices go on beyond the edge with their mirror image
(``PreparedVolume.end_pads``: a cut through the brain), the ramp counts that extension as distance.
"""

import math
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .decode import VolumeDecode, prob_to_logit
from .volume import PlaneView

Box = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]  # canonical [lo, hi) along S, P, L
PLANE_TO_CANONICAL = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (1, 2, 0)}
DEFAULT_WEIGHTS = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
#: canonical array axis (S 0, P 1, L 2) along each plane's normal
NORMAL_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
EDGE_MM = 40.0  # a view's weight ramps down within this distance of an edge that cuts its slices
EDGE_FLOOR = 0.25  # and never below this fraction: a cut view still helps a structure that reaches the edge


Cuts = Sequence[Tuple[bool, bool]]  # per canonical axis: (low end, high end) cuts through the body
ALL_CUT: Cuts = ((True, True),) * 3


def edge_ramp(
    n: int,
    spacing: float,
    positions: np.ndarray,
    cut: Tuple[bool, bool] = (True, True),
    pad: Tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Weight factor of voxels at ``positions`` along an axis of ``n`` voxels of ``spacing`` mm: their distance to
    the nearer end of the axis that ``cut`` marks as cutting through the body, over ``EDGE_MM``, clipped to
    [``EDGE_FLOOR``, 1] (1 everywhere when neither end cuts). ``pad``: the mm of mirror image the slices go on
    with beyond each end (``PreparedVolume.end_pads``), counted as distance.

    Example:
        >>> [round(float(v), 3) for v in edge_ramp(100, 1.0, np.array([0, 19, 50, 99]))]
        [0.25, 0.488, 1.0, 0.25]
        >>> [round(float(v), 3) for v in edge_ramp(100, 1.0, np.array([0, 99]), cut=(False, True))]
        [1.0, 0.25]
    """
    pos = np.asarray(positions, dtype=np.float64)
    distance = np.full(pos.shape, np.inf)
    if cut[0]:
        distance = np.minimum(distance, (pos + 0.5) * spacing + pad[0])
    if cut[1]:
        distance = np.minimum(distance, (n - pos - 0.5) * spacing + pad[1])
    return np.clip(distance / EDGE_MM, EDGE_FLOOR, 1.0).astype(np.float32)


def edge_factors(
    shape: Sequence[int],
    spacing: Sequence[float],
    plane: str,
    positions: Sequence[np.ndarray],
    cuts: Cuts = ALL_CUT,
    pads: Optional[Sequence[Tuple[float, float]]] = None,
) -> np.ndarray:
    """The field-of-view factor of ``plane``'s weight at the canonical grid ``positions`` (S, P, L index arrays;
    ``spacing`` in mm per canonical axis; ``cuts``: which ends cut through the body; ``pads``: mm of mirror image
    beyond each end): the product of :func:`edge_ramp` along its two in-plane axes, shaped to broadcast over
    (len(S), len(P), len(L))."""
    out = np.ones((1, 1, 1), dtype=np.float32)
    for axis in range(3):
        if axis == NORMAL_AXIS[plane]:
            continue
        shape_1d = [1, 1, 1]
        shape_1d[axis] = len(positions[axis])
        pad = tuple(pads[axis]) if pads is not None else (0.0, 0.0)
        ramp = edge_ramp(int(shape[axis]), float(spacing[axis]), positions[axis], tuple(cuts[axis]), pad)  # type: ignore
        out = out * ramp.reshape(shape_1d)
    return out


def box_edge_factors(volume, planes: Sequence[str], box: Box) -> Dict[str, np.ndarray]:
    """:func:`edge_factors` of each plane over a canonical ``box`` of ``volume`` (a :class:`PreparedVolume`)."""
    shape = volume.canonical.shape
    spacing = tuple(volume.canonical_spacing[::-1])  # (L, P, S) -> canonical array order
    positions = [np.arange(lo, hi) for lo, hi in box]
    cuts = volume.cut_ends
    pads = [(lo * sp, hi * sp) for (lo, hi), sp in zip(volume.end_pads, spacing)]
    return {p: edge_factors(shape, spacing, p, positions, cuts, pads) for p in planes}


def edge_zone(volume, plane: str, box: Box) -> List[Box]:
    """The parts of ``box`` within ``EDGE_MM`` of an end of the volume along ``plane``'s normal that cuts through the
    body: there the other views' slices are cut by that edge, and ``plane`` alone may carry the fused mask."""
    axis = NORMAL_AXIS[plane]
    n = volume.canonical.shape[axis]
    reach = [
        int(math.ceil(EDGE_MM / max(float(volume.canonical_spacing[2 - axis]), 1e-6))) - pad
        for pad in volume.end_pads[axis]
    ]  # the other views' slices go on with their mirror image for the padded voxels
    out = []
    ends = [(0, min(n, max(0, reach[0]))), (max(0, n - max(0, reach[1])), n)]
    cut = volume.cut_ends[axis]
    for (lo, hi), is_cut in zip(ends, cut):
        if not is_cut:
            continue
        a, b = max(lo, box[axis][0]), min(hi, box[axis][1])
        if a < b:
            part = list(box)
            part[axis] = (a, b)
            out.append(tuple(part))
    return out  # type: ignore[return-value]


def _view_ranges(view: PlaneView, box: Box) -> Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]:
    """Canonical box -> (slice, row, col) ranges of ``view``."""
    (s0, s1), (p0, p1), (l0, l1) = box
    n_s = view.volume.canonical.shape[0]
    if view.plane == "axial":
        return (s0, s1), (p0, p1), (l0, l1)
    if view.plane == "coronal":
        return (p0, p1), (n_s - s1, n_s - s0), (l0, l1)
    return (l0, l1), (n_s - s1, n_s - s0), (p0, p1)


def _canonical_box(view: PlaneView, k: Tuple[int, int], r: Tuple[int, int], c: Tuple[int, int]) -> Box:
    """(slice, row, col) ranges of ``view`` -> canonical box (inverse of :func:`_view_ranges`)."""
    n_s = view.volume.canonical.shape[0]
    if view.plane == "axial":
        return k, r, c
    s = (n_s - r[1], n_s - r[0])
    if view.plane == "coronal":
        return s, k, c
    return s, c, k


def view_box(
    view: PlaneView, dec: VolumeDecode, gate: float, level: float = 0.1, margin: int = 2, pad: float = 0.0
) -> Optional[Box]:
    """Canonical box around everything ``view`` finds above probability ``level`` on its present slices; ``pad``
    model pixels more in-plane (probed masks know a target's edge to a block of pixels only)."""
    present = dec.presence.float().numpy() >= gate
    if not present.any():
        return None
    logits = dec.logits[torch.as_tensor(np.flatnonzero(present))]
    hot = logits.float() > prob_to_logit(level)
    per_slice = hot.flatten(1).any(1).numpy()
    if not per_slice.any():
        return None
    ks = np.flatnonzero(present)[per_slice]
    area = hot.any(0).numpy()
    ys, xs = np.flatnonzero(area.any(1)), np.flatnonzero(area.any(0))
    fit = view.fit
    rows, cols = fit.from_model(
        np.array([ys[0] - 1.0 - pad, ys[-1] + 1.0 + pad]), np.array([xs[0] - 1.0 - pad, xs[-1] + 1.0 + pad])
    )
    r = (max(0, int(math.floor(rows[0])) - margin), min(view.height, int(math.ceil(rows[1])) + margin + 1))
    c = (max(0, int(math.floor(cols[0])) - margin), min(view.width, int(math.ceil(cols[1])) + margin + 1))
    k = (max(0, int(ks[0]) - margin), min(view.num_slices, int(ks[-1]) + margin + 1))
    return _canonical_box(view, k, r, c)


def union_box(boxes: Sequence[Optional[Box]]) -> Optional[Box]:
    """Smallest box holding every box (None entries are ignored; None when there is none)."""
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return tuple((min(b[a][0] for b in real), max(b[a][1] for b in real)) for a in range(3))  # type: ignore


def view_probabilities(
    view: PlaneView, dec: VolumeDecode, box: Box, gate: float, contiguous: bool = True
) -> np.ndarray:
    """Probabilities of ``view`` inside canonical ``box`` (float32, canonical order; a transposed view of the
    plane's stack unless ``contiguous``); absent slices are 0."""
    (k0, k1), (r0, r1), (c0, c1) = _view_ranges(view, box)
    out = np.zeros((k1 - k0, r1 - r0, c1 - c0), dtype=np.float32)
    present = np.flatnonzero(dec.presence[k0:k1].float().numpy() >= gate)
    rows = torch.arange(r0, r1, dtype=torch.float32)
    if view.plane != "axial":
        rows = rows.flip(0)  # sampled bottom-up: the block's rows run along S as in the canonical array
    if present.size and out.size:
        fit = view.fit
        crop = dec.logits[torch.as_tensor(present + k0), fit.top : fit.top + fit.h, fit.left : fit.left + fit.w]
        y = (rows + fit.pad[0] + 0.5) * (2.0 / fit.padded_height) - 1.0
        x = (torch.arange(c0, c1, dtype=torch.float32) + fit.pad[2] + 0.5) * (2.0 / fit.padded_width) - 1.0
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)[None]  # (1, rows, cols, (x, y))
        for start in range(0, present.size, 32):
            part = crop[start : start + 32].float()[:, None]
            up = F.grid_sample(part, grid.expand(part.shape[0], -1, -1, -1), "bilinear", "border", False)
            out[present[start : start + 32]] = torch.sigmoid(up[:, 0]).numpy()
    canonical = out.transpose(PLANE_TO_CANONICAL[view.plane])  # from_slice_view without its flip (done above)
    return np.ascontiguousarray(canonical) if contiguous else canonical


def fuse(
    blocks: Mapping[str, np.ndarray],
    weights: Optional[Mapping[str, float]] = None,
    factors: Optional[Mapping[str, np.ndarray]] = None,
) -> np.ndarray:
    """Weighted mean of the views' probability blocks (weights renormalised over the views given); ``factors``:
    per-voxel multipliers of each view's weight (broadcastable to the blocks, :func:`box_edge_factors`), the
    weights then renormalised per voxel.

    Example:
        >>> a, s = np.ones((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.float32)
        >>> round(float(fuse({"axial": a, "sagittal": s})[0, 0, 0]), 3)  # 0.4 / (0.4 + 0.2)
        0.667
    """
    w: Dict[str, float] = {p: float((weights or DEFAULT_WEIGHTS).get(p, 1.0)) for p in blocks}
    if factors is not None and any(float(f.min()) < 1.0 for f in factors.values()):
        fields = {p: torch.from_numpy(np.asarray(factors[p], dtype=np.float32)) * w[p] for p in blocks}
        total_field = sum(fields.values())
        fused = None
        for plane, block in blocks.items():
            part = torch.from_numpy(block) * (fields[plane] / total_field)
            fused = part if fused is None else fused.add_(part)
        return fused.numpy()  # type: ignore[union-attr]
    total = sum(w.values())
    out = None
    for plane, block in blocks.items():  # in place, on torch's threads; blocks may be strided views
        part = torch.from_numpy(block)
        if out is None:
            out = torch.mul(part, w[plane] / total).contiguous()
        else:
            out.add_(part, alpha=w[plane] / total)
    return out.numpy()  # type: ignore[union-attr]
