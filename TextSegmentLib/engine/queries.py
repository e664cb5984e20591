"""Segmenting one typed query (:class:`~TextSegmentLib.prompts.Query`): the engine dispatches on its kind.

- ``structure``: the model reads the vocabulary name (or the prompt as typed, ``prompt_text="raw"``);
- ``both_sides`` and ``group``: every part (a vocabulary name) is segmented with its own calibrated threshold and
  clean-up, each sided part is checked to lie on its side, and the parts are united into one segment;
- ``spatial``: every part is segmented and one found part is kept (the largest, the smallest, the one lying furthest
  to the patient's left or right);
- ``finding`` and ``unsupported``: nothing is segmented; the report says why.
"""

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..model.mask_decoder import ABSENT_LOGIT
from ..prompts import Query, mirror_sides
from .belief import Belief, mean, mirrored
from .belief import union as unite
from .multiview import belief_mask, decode_views, fused_belief, stored
from .result import PartReport, PromptState, laterality_check
from .vocabulary import calibrated_threshold, one_piece, outlier_sds, solid
from .volume import PreparedVolume

#: decodes one text: (text, vocabulary name or None, start, span) -> (mask, presence, threshold, largest_only, belief,
#: trim_outliers)
DecodeFn = Callable[
    [str, Optional[str], float, float],
    Tuple[np.ndarray, Dict[str, torch.Tensor], float, bool, Optional[Belief], float],
]


def decode_text(
    model: Any,
    volume: PreparedVolume,
    embeddings: Dict[str, Any],
    batcher: Any,
    opts: Dict[str, Any],
    vocabulary: List[Any],
    progress: Any,
    cancel: Any,
    memo: Optional[Dict[Any, Any]] = None,
    mirror: Optional[Tuple[PreparedVolume, Dict[str, Any]]] = None,
) -> DecodeFn:
    """The function that segments one text (a vocabulary name: its calibrated threshold and clean-up). ``memo``
    keeps what one call decoded, so that prompts sharing parts ("putamen", "basal ganglia") decode them once; its
    masks are shared: never change them in place. ``mirror``: the volume mirrored left-right and its embeddings; a
    vocabulary name is then also segmented there with left and right swapped, and the two fused probabilities are
    averaged before the threshold (a text that is not a vocabulary name is segmented once)."""
    memo = {} if memo is None else memo

    def run(text: str, name: Optional[str], start: float, span: float):
        key = (text, name, tuple(sorted((p, id(e)) for p, e in embeddings.items())))
        if key not in memo:
            memo[key] = _run(text, name, start, span)
        return memo[key]

    def _run(text: str, name: Optional[str], start: float, span: float):
        threshold = opts["mask_threshold"]
        if threshold is None:
            threshold = calibrated_threshold(name, vocabulary)
        popts = dict(opts, mask_threshold=threshold)
        both = mirror is not None and name is not None and text == name
        share = span / 2 if both else span
        decodes = decode_views(
            model, volume, embeddings, model.encode_text([text]), batcher, popts, progress, cancel, start, share
        )
        belief = fused_belief(volume, decodes, popts)
        if both:
            other, other_embeddings = mirror  # type: ignore[misc]
            swapped = model.encode_text([mirror_sides(text)])
            seen = decode_views(model, other, other_embeddings, swapped, batcher, popts, progress, cancel,
                                start + share, share)  # fmt: skip
            belief = mean(belief, mirrored(fused_belief(other, seen, popts), volume.canonical.shape[2]))
        largest = opts["largest_only"]
        if largest is None:
            largest = one_piece(name or "", vocabulary)
        trim = opts["trim_outliers"]
        if trim is None:
            trim = outlier_sds(name or "", vocabulary)
        cleanup = {"fill_holes": opts["fill_holes"] and solid(name or "", vocabulary), "largest_only": largest,
                   "trim_outliers": trim}  # fmt: skip
        mask = belief_mask(volume, belief, dict(popts, **cleanup))
        return mask, {p: d.presence for p, d in decodes.items()}, threshold, largest, stored(belief), float(trim)

    return run


def _part_side(name: str, vocabulary: List[Any]) -> Optional[str]:
    entry = next((e for e in vocabulary if isinstance(e, dict) and e.get("name") == name), {})
    side = entry.get("laterality")
    if side in ("left", "right"):
        return side
    first = name.split(" ", 1)[0].lower()
    return first if first in ("left", "right") else None


def _centre(mask: np.ndarray) -> float:
    """The mask's centre along the canonical left axis (grows to the patient's left)."""
    profile = mask.sum(axis=(0, 1), dtype=np.int64)
    return float((profile * np.arange(profile.size)).sum() / max(profile.sum(), 1))


def absent_state(volume: PreparedVolume, query: Query, window: Any, views, seconds: float, known: bool) -> PromptState:
    """An empty, not-found state (no model work; a box can still refine it)."""
    presence = {p: torch.full((volume.view(p).num_slices,), ABSENT_LOGIT) for p in views}
    mask = np.zeros(volume.canonical.shape, dtype=bool)
    return PromptState(query.prompt, query, window, presence, mask, seconds, known=known, text=query.prompt)


def segment_query(
    query: Query, volume: PreparedVolume, decode: DecodeFn, opts: Dict[str, Any], vocabulary: List[Any],
    window: Any, start: float, span: float,
) -> PromptState:  # fmt: skip
    """Segment one query that names something the model knows (see the module's kinds)."""
    t0 = time.perf_counter()
    if query.kind == "structure":
        said = query.text if opts["prompt_text"] == "matched" else query.prompt
        mask, presence, threshold, largest, belief, trim = decode(said, query.term, start, span)
        mask = mask.copy()  # each prompt owns its mask (a refinement changes it in place; decodes are shared)
        return PromptState(query.prompt, query, window, presence, mask, time.perf_counter() - t0, text=said,
                           threshold=threshold, largest_only=largest, belief=belief, trim_outliers=trim)  # fmt: skip
    voxel_ml = volume.voxel_ml
    parts: List[PartReport] = []
    masks: List[np.ndarray] = []
    presence: Dict[str, torch.Tensor] = {}
    thresholds = []
    trims = []
    beliefs: List[Optional[Belief]] = []
    step = span / max(len(query.parts), 1)
    for i, name in enumerate(query.parts):
        mask, pres, threshold, largest, belief, trim = decode(name, name, start + i * step, step)
        trims.append(trim)
        beliefs.append(belief)
        side = _part_side(name, vocabulary)
        parts.append(PartReport(name, side, bool(mask.any()), round(float(mask.sum()) * voxel_ml, 3),
                                laterality_check(mask, side), threshold))  # fmt: skip
        for plane, logits in pres.items():
            presence[plane] = logits if plane not in presence else torch.maximum(presence[plane], logits)
        thresholds.append(threshold)
        if query.kind == "spatial":
            masks.append(mask)
        elif masks:
            masks[0] |= mask
        else:
            masks.append(mask.copy())
    chosen = None
    if query.kind == "spatial":
        found = [i for i, m in enumerate(masks) if m.any()]
        if found:
            if query.relation in ("largest", "smallest"):
                key = lambda i: int(masks[i].sum())  # noqa: E731
            else:
                key = lambda i: _centre(masks[i])  # noqa: E731
            pick = max(found, key=key) if query.relation in ("largest", "left") else min(found, key=key)
            chosen = query.parts[pick]
            union = masks[pick].copy()
            beliefs = [beliefs[pick]]
        else:
            union = np.zeros(volume.canonical.shape, dtype=bool)
    else:
        union = masks[0] if masks else np.zeros(volume.canonical.shape, dtype=bool)
    state = PromptState(query.prompt, query, window, presence, union, time.perf_counter() - t0, text=query.prompt,
                        threshold=min(thresholds) if thresholds else None, largest_only=False,
                        trim_outliers=max(trims) if trims else None,
                        belief=unite(beliefs))  # fmt: skip
    state.parts = parts
    state.chosen = chosen
    return state
