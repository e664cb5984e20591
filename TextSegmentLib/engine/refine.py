"""Refinement of one prompt on one slice of any plane (a box and/or +/- points, with the text), propagated along
that plane's normal while the structure continues. The rules, in the order they are applied:

On the refined slice (the user's word is final there):

- The slice is re-decoded with the text, the box/points and the current segment on that slice as the dense prompt
  (with a box, only the part of the segment inside the box).
- **Box**: "the structure is here and only here on this slice". The slice's new mask is the model's mask clipped to
  the box (pixels whose centres lie within half a voxel of the box corners). If the model finds nothing inside the
  box, the current segment inside the box is kept; if that is empty too, the ellipse inscribed in the box is taken.
- **+ point**: adds the connected region of the new prediction that contains the point (8-connected); if the model
  does not put the point in its prediction, a disc of ``CLICK_RADIUS_PX`` pixels around it is added instead. Nothing
  else on the slice changes.
- **- point** (on the segment): removes the connected part of the segment that the new prediction leaves out and
  that contains the point; if the model keeps the point, the segment within ``CLICK_RADIUS_PX`` pixels of it is
  removed instead. A - point off the segment removes nothing. With a box, the result is clipped to the box again.

Propagation to the neighbouring slices, in each direction along the normal, one slice at a time, each decoded with
the text and: after a box, the box carried on (the previous slice's new mask's bounding box, ``FOOTPRINT_PX`` pixels
wider) with the current segment inside it as the dense prompt; after points only, the clicks carried on (below).
(Tried on the validation variants and dropped: the previous slice's new mask as the only prompt (the model copies
that prior and the copy drifts off the structure over a few slices: mean Dice fell after a box), and no mask prior
with a box (the model alone fills the box badly: mean Dice -0.11).)

- **Follows the structure**: with a box, a slice's new mask is the part of the prediction connected to (overlapping)
  the previous slice's new mask, within ``FOOTPRINT_PX`` pixels of it. After points only, just the correction is
  carried: each click is carried on to the next slice at the centre of the region it changed on the previous slice
  (decoded with that point and the slice's current segment as the dense prompt); while the model follows it there
  (puts a + point in, leaves a - point out), it adds the predicted region outside the segment (removes the segment
  outside the prediction) that overlaps the previous slice's added (removed) region, within ``FOOTPRINT_PX`` pixels.
- **Stops where the structure ends**: at the first slice where the presence gate says absent, the mask (or the
  carried correction) is empty, or the new mask agrees with the segment already there (Dice >= ``converge_dice``,
  that slice is the last one changed); never beyond the extent of the current segment along the normal (the first
  to the last slice holding it; the whole volume only when the segment is empty), and never more than
  ``max_propagation`` slices (default ``DEFAULT_MAX_PROPAGATION``) each way.
- **Keeps the seam**: the last changed slice must agree with the unchanged slice beyond it at least as well as the
  segment did before (Dice); if not, that slice is dropped, and so on inward (the refined slice itself stays).

Only the refined slice and the propagated slices change; other planes' slices, other prompts and everything outside
that run are untouched. Slice embeddings are cached: a refinement decodes one slice per changed slice plus one per
direction, and encodes only the slices it decodes that were never encoded.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy import ndimage

from ..imaging import fit_slices
from ..model import TextEmbedding
from ..model.mask_decoder import ABSENT_LOGIT
from .batching import CancelFn, ProgressFn, check_cancel
from .decode import fill_holes_2d, prob_to_logit, slice_images, upscale_masks
from .embeddings import SliceEmbeddings
from .result import PromptState
from .volume import slice_view

PRIOR_LOGIT = 10.0  # confidence of the current segment given as the dense prompt (training used 4..20)
DEFAULT_MAX_PROPAGATION = 64  # slices each way at most (the segment's own extent bounds it first)
FOOTPRINT_PX = 2  # a propagated slice's mask stays within this many pixels of the previous slice's
CLICK_RADIUS_PX = 2  # the disc a click adds or removes where the model does not follow it
_EIGHT = np.ones((3, 3), dtype=bool)
Box = Tuple[float, float, float, float]


@dataclass
class SlicePrompts:
    """A refinement's prompts on its slice: for the model (``box`` (x0, y0, x1, y1) and ``points`` (N, 2) (x, y) in
    model input pixels) and for the rules (``box_rc`` (r0, c0, r1, c1) and ``points_rc`` (N, 2) (row, col) in slice
    pixels); ``labels`` 1 = +, 0 = -."""

    box: Optional[Box] = None
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    box_rc: Optional[Box] = None
    points_rc: Optional[np.ndarray] = None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def mask_prior(mask: np.ndarray, fit) -> torch.Tensor:
    """A slice's current binary mask (H, W) -> model-resolution logits (S, S) for the dense prompt."""
    if not mask.any():
        return torch.full((fit.size, fit.size), ABSENT_LOGIT)
    resized = fit_slices(mask[None].astype(np.float32), fit, pad_value=0.0)[0]
    return (resized * 2.0 - 1.0) * PRIOR_LOGIT


def box_region(shape: Tuple[int, int], box_rc: Box) -> np.ndarray:
    """The pixels of a (rows, cols) slice inside a box (r0, c0, r1, c1): centres within half a pixel of its corners.

    Example:
        >>> box_region((4, 5), (1.0, 1.0, 2.0, 3.0)).astype(int).tolist()[1]
        [0, 1, 1, 1, 0]
    """
    r0, c0, r1, c1 = box_rc
    rows = np.arange(shape[0])
    cols = np.arange(shape[1])
    inside_r = (rows >= min(r0, r1) - 0.5) & (rows <= max(r0, r1) + 0.5)
    inside_c = (cols >= min(c0, c1) - 0.5) & (cols <= max(c0, c1) + 0.5)
    return inside_r[:, None] & inside_c[None, :]


def _ellipse(shape: Tuple[int, int], box_rc: Box) -> np.ndarray:
    r0, c0, r1, c1 = box_rc
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    cr, ccol = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    hr, hc = max(abs(r1 - r0) / 2.0, 0.5), max(abs(c1 - c0) / 2.0, 0.5)
    return ((rr - cr) / hr) ** 2 + ((cc - ccol) / hc) ** 2 <= 1.0


def _disc(shape: Tuple[int, int], r: int, c: int, radius: int) -> np.ndarray:
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rr - r) ** 2 + (cc - c) ** 2 <= radius * radius


def touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``mask`` that overlap ``seed``.

    Example:
        >>> m = np.array([[1, 1, 0, 0, 1]], bool)
        >>> touching(m, np.array([[0, 1, 0, 0, 0]], bool)).astype(int).tolist()
        [[1, 1, 0, 0, 0]]
    """
    if not mask.any() or not seed.any():
        return np.zeros_like(mask)
    labels, _ = ndimage.label(mask, structure=_EIGHT)
    hit = np.unique(labels[seed & mask])
    return np.isin(labels, hit[hit > 0])


def _near(mask: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, structure=_EIGHT, iterations=radius) if radius > 0 else mask


def refine_on_slice(pred: np.ndarray, current: np.ndarray, prompts: SlicePrompts) -> np.ndarray:
    """The refined slice's new mask from the model's prediction ``pred`` (made with the prompts) and the current
    segment ``current`` on that slice, by the rules of the module docstring (box, then points in order)."""
    shape = current.shape
    inside = box_region(shape, prompts.box_rc) if prompts.box_rc is not None else np.ones(shape, dtype=bool)
    if prompts.box_rc is not None:
        new = pred & inside
        if not new.any():
            new = current & inside
        if not new.any():
            new = _ellipse(shape, prompts.box_rc) & inside
    else:
        new = current.copy()
    points = prompts.points_rc if prompts.points_rc is not None else np.zeros((0, 2))
    labels = prompts.labels if prompts.labels is not None else np.ones(len(points), dtype=np.int64)
    for (row, col), label in zip(points, labels):
        r = int(np.clip(round(float(row)), 0, shape[0] - 1))
        c = int(np.clip(round(float(col)), 0, shape[1] - 1))
        seed = np.zeros(shape, dtype=bool)
        seed[r, c] = True
        if int(label) == 1:
            added = touching(pred, seed) if pred[r, c] else _disc(shape, r, c, CLICK_RADIUS_PX)
            new |= added & inside
        elif new[r, c]:
            gone = touching(new & ~pred, seed) if not pred[r, c] else new & _disc(shape, r, c, CLICK_RADIUS_PX)
            new &= ~gone
    return new


def refine_slices(
    model: torch.nn.Module,
    embeddings: SliceEmbeddings,
    text: TextEmbedding,
    state: PromptState,
    slice_index: int,
    prompts: SlicePrompts,
    presence_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_propagation: Optional[int] = None,
    converge_dice: float = 0.95,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> Dict[int, np.ndarray]:
    """New masks {slice: (H, W) bool} of the refined slice and of the slices the refinement propagated to, in the
    plane of ``embeddings.volume`` (a :class:`PlaneView`); ``state.mask`` is canonical. See the module docstring."""
    view = embeddings.volume
    fit = view.fit
    n = view.num_slices
    gate = prob_to_logit(presence_threshold)
    current = slice_view(state.mask, view.plane)

    def decode(
        k: int, prior: np.ndarray, with_prompts: bool, box_rc: Optional[Box] = None, clicks: Optional[list] = None
    ) -> Tuple[np.ndarray, float]:
        kwargs = {}
        if with_prompts and prompts.box is not None:
            kwargs["boxes"] = torch.tensor([prompts.box], dtype=torch.float32)
        if box_rc is not None:
            y, x = fit.to_model(np.array([box_rc[0], box_rc[2]]), np.array([box_rc[1], box_rc[3]]))
            kwargs["boxes"] = torch.tensor([[float(x[0]), float(y[0]), float(x[1]), float(y[1])]], dtype=torch.float32)
        if with_prompts and prompts.points is not None and len(prompts.points):
            kwargs["points"] = torch.as_tensor(prompts.points, dtype=torch.float32)[None]
            kwargs["point_labels"] = torch.as_tensor(prompts.labels, dtype=torch.long)[None]
        if clicks:  # [(row, col, label)] carried on from the previous slice
            rc = np.array([(r, c) for r, c, _ in clicks], dtype=np.float64)
            y, x = fit.to_model(rc[:, 0], rc[:, 1])
            kwargs["points"] = torch.as_tensor(np.stack([x, y], axis=1), dtype=torch.float32)[None]
            kwargs["point_labels"] = torch.as_tensor([[lab for _, _, lab in clicks]], dtype=torch.long)
        dense = None if prior is None else mask_prior(prior, fit)[None, None]
        with torch.no_grad():
            out = model.decode(  # type: ignore[operator]
                embeddings.get([k]), text=text, mask_inputs=dense, images=slice_images(model, embeddings, [k]), **kwargs
            )
        logits = out.masks[0, 0].to("cpu", torch.float16)
        mask = upscale_masks(logits[None], fit, mask_threshold)
        fill_holes_2d(mask)
        return mask[0], float(out.presence[0, 0])

    check_cancel(cancel)
    s = slice_index
    own = current[s]
    prior = own & box_region(own.shape, prompts.box_rc) if prompts.box_rc is not None else own
    pred, _ = decode(s, prior, True)
    new_s = refine_on_slice(pred, own, prompts)
    changes: Dict[int, np.ndarray] = {s: new_s}

    occupied = np.flatnonzero(current.reshape(n, -1).any(axis=1))
    lo, hi = (min(int(occupied[0]), s), max(int(occupied[-1]), s)) if occupied.size else (0, n - 1)
    limit = DEFAULT_MAX_PROPAGATION if max_propagation is None else max(0, int(max_propagation))
    replace = prompts.box_rc is not None
    for step, direction in enumerate((+1, -1)):
        run = _propagate(decode, current, s, new_s, direction, (lo, hi), limit, replace, gate, converge_dice, cancel)
        for k, mask in _keep_seam(run, current, direction):
            changes[k] = mask
        if progress is not None:
            progress((step + 1) / 2, "propagating the refinement")
    return changes


def _propagate(decode, current, s, new_s, direction, bounds, limit, replace, gate, converge, cancel):
    """The slices beyond ``s`` in ``direction`` that the refinement carries to: [(k, new mask)] in order."""
    lo, hi = bounds
    own = current[s]
    added, removed = new_s & ~own, own & ~new_s  # the correction carried after points only
    prev = new_s
    run: List[Tuple[int, np.ndarray]] = []
    if not (prev.any() if replace else (added.any() or removed.any())):
        return run  # nothing to carry on
    k = s + direction
    while lo <= k <= hi and len(run) < limit:
        check_cancel(cancel)
        here = current[k]
        if replace:  # the box carried on: the previous slice's new mask's bounding box, FOOTPRINT_PX wider
            rows, cols = np.flatnonzero(prev.any(axis=1)), np.flatnonzero(prev.any(axis=0))
            m = FOOTPRINT_PX
            carried = (float(rows[0] - m), float(cols[0] - m), float(rows[-1] + m), float(cols[-1] + m))
            pred, presence = decode(k, here & box_region(here.shape, carried), False, carried)
        else:  # each click carried on, at the centre of the region it changed on the previous slice
            clicks = [(*_centre(region), label) for region, label in ((added, 1), (removed, 0)) if region.any()]
            pred, presence = decode(k, here, False, clicks=clicks)
        if presence < gate:
            break
        if replace:
            mask = touching(pred, prev) & _near(prev, FOOTPRINT_PX)
            if not mask.any():
                break
            run.append((k, mask))
            if _dice(mask, here) >= converge:
                break
        else:  # a carried click the model does not follow there ends its run
            plus = [(r, c) for r, c, lab in clicks if lab == 1]
            minus = [(r, c) for r, c, lab in clicks if lab == 0]
            added = (
                touching(pred & ~here, added) & _near(added, FOOTPRINT_PX) if plus and pred[plus[0]] else added & False
            )
            removed = (
                touching(here & ~pred, removed) & _near(removed, FOOTPRINT_PX)
                if minus and not pred[minus[0]]
                else removed & False
            )
            if not added.any() and not removed.any():
                break
            mask = (here | added) & ~removed
            run.append((k, mask))
        prev = run[-1][1]
        k += direction
    return run


def _centre(region: np.ndarray) -> Tuple[int, int]:
    """The pixel of ``region`` farthest from its edge (where a click on it would be placed)."""
    depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(depth)), region.shape)
    return int(r), int(c)


def _keep_seam(run, current, direction):
    """Drop slices from the far end of ``run`` while the last one agrees less with the unchanged slice beyond it
    than the segment there did before."""
    n = current.shape[0]
    run = list(run)
    while run:
        k, mask = run[-1]
        beyond = k + direction
        if not 0 <= beyond < n or _dice(mask, current[beyond]) >= _dice(current[k], current[beyond]):
            break
        run.pop()
    return run


def apply_changes(state: PromptState, plane: str, changes: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    """Write slice masks ``changes`` ({slice: (H, W) bool}) of ``plane`` into the canonical ``state.mask``; returns
    the previous contents of the slices that differ (for undo; slices that come out the same are not written)."""
    view = slice_view(state.mask, plane)  # a writable view of the canonical mask
    old: Dict[int, np.ndarray] = {}
    for k, mask in changes.items():
        if np.array_equal(view[k], mask):
            continue
        old[k] = view[k].copy()
        view[k] = mask
    return old
