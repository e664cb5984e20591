"""Refinement of one prompt on one slice of any plane (box and/or +/- points + text + the current mask),
propagated along that plane's normal.

The refined slice is re-decoded with the text, the box/points and the current segment on that slice (as mask logits,
the dense prompt). The new mask is then propagated slice by slice in both directions along the plane's normal, each
time with the text and the previous slice's new logits as the dense prompt, while the target stays present
(presence above the threshold and a non-empty mask), until the propagated mask agrees with the existing one
(Dice >= ``converge_dice``) or ``max_propagation`` slices were changed. Slices outside that range are never touched.
"""

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..imaging import fit_slices
from ..model import TextEmbedding
from ..model.mask_decoder import ABSENT_LOGIT
from .batching import CancelFn, ProgressFn, check_cancel
from .decode import fill_holes_2d, prob_to_logit, slice_images, upscale_masks
from .embeddings import SliceEmbeddings
from .result import PromptState
from .volume import slice_view

Decoded = Tuple[np.ndarray, torch.Tensor, float]  # (mask (H, W), logits (S, S) fp16, presence logit)
PRIOR_LOGIT = 10.0  # confidence of the current segment given as the dense prompt (training used 4..20)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def mask_prior(mask: np.ndarray, fit) -> torch.Tensor:
    """A slice's current binary mask (H, W) -> model-resolution logits (S, S) for the dense prompt."""
    if not mask.any():
        return torch.full((fit.size, fit.size), ABSENT_LOGIT)
    resized = fit_slices(mask[None].astype(np.float32), fit, pad_value=0.0)[0]
    return (resized * 2.0 - 1.0) * PRIOR_LOGIT


def refine_slices(
    model: torch.nn.Module,
    embeddings: SliceEmbeddings,
    text: TextEmbedding,
    state: PromptState,
    slice_index: int,
    box: Optional[Tuple[float, float, float, float]],
    points: Optional[np.ndarray],
    labels: Optional[np.ndarray],
    presence_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    max_propagation: Optional[int] = None,
    converge_dice: float = 0.95,
    progress: ProgressFn = None,
    cancel: CancelFn = None,
) -> Dict[int, Decoded]:
    """New (mask, logits, presence) of the refined slice and of the slices the refinement propagated to, in the
    plane of ``embeddings.volume`` (a :class:`PlaneView`); ``state.mask`` is canonical.

    ``box`` (x0, y0, x1, y1) and ``points`` (N, 2) (x, y) are in model input pixels; ``labels`` 1 = +, 0 = -.
    """
    view = embeddings.volume
    fit = view.fit
    n = view.num_slices
    gate = prob_to_logit(presence_threshold)
    current = slice_view(state.mask, view.plane)

    def decode(k: int, mask_logits: torch.Tensor, prompts: bool) -> Decoded:
        kwargs = {}
        if prompts and box is not None:
            kwargs["boxes"] = torch.tensor([box], dtype=torch.float32)
        if prompts and points is not None and len(points):
            kwargs["points"] = torch.as_tensor(points, dtype=torch.float32)[None]
            kwargs["point_labels"] = torch.as_tensor(labels, dtype=torch.long)[None]
        dense = mask_logits.float().clamp(ABSENT_LOGIT, -ABSENT_LOGIT)[None, None]
        with torch.no_grad():
            out = model.decode(  # type: ignore[operator]
                embeddings.get([k]), text=text, mask_inputs=dense, images=slice_images(model, embeddings, [k]), **kwargs
            )
        logits = out.masks[0, 0].to("cpu", torch.float16)
        mask = upscale_masks(logits[None], fit, mask_threshold)
        fill_holes_2d(mask)
        return mask[0], logits, float(out.presence[0, 0])

    check_cancel(cancel)
    changes: Dict[int, Decoded] = {slice_index: decode(slice_index, mask_prior(current[slice_index], fit), True)}
    limit = n if max_propagation is None else max(0, int(max_propagation))
    steps = [(+1, limit), (-1, limit)]
    done = 0
    for direction, budget in steps:
        prev = changes[slice_index][1]
        k = slice_index + direction
        changed = 0
        while 0 <= k < n and changed < budget:
            check_cancel(cancel)
            mask, logits, presence = decode(k, prev, False)
            if presence < gate or not mask.any():
                break
            converged = _dice(mask, current[k]) >= converge_dice
            changes[k] = (mask, logits, presence)
            changed += 1
            if converged:
                break
            prev = logits
            k += direction
        done += 1
        if progress is not None:
            progress(done / len(steps), "propagating the refinement")
    return changes


def apply_changes(state: PromptState, plane: str, changes: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    """Write slice masks ``changes`` ({slice: (H, W) bool}) of ``plane`` into the canonical ``state.mask``; returns
    the previous contents of those slices (for undo)."""
    view = slice_view(state.mask, plane)  # a writable view of the canonical mask
    old: Dict[int, np.ndarray] = {}
    for k, mask in changes.items():
        old[k] = view[k].copy()
        view[k] = mask
    return old
