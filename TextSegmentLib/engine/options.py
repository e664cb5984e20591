"""Segment options: the defaults and their checks, resolved against a model card (planes, view weights)."""

from typing import Any, Dict, Sequence

from .fusion import DEFAULT_WEIGHTS
from .volume import SLICE_AXES, check_axis, resolve_window

DEFAULT_OPTIONS: Dict[str, Any] = {
    "views": None,  # planes to segment and fuse; None: the model card's planes (axial only for older cards)
    "view_weights": None,  # {plane: weight} for the fusion; None: the card's, else axial/coronal 0.4, sagittal 0.2
    "slice_axis": None,  # a single plane (same as views=(plane,)); None: use views
    "ct_window": None,  # None: chosen per prompt from the vocabulary / anatomy
    "modality": None,  # None: detected (DICOM Modality, else Hounsfield range); "CT" or "MR" to override
    "presence_threshold": 0.5,  # probability; slices below are absent (0 keeps all, 1 drops all)
    # probability of a voxel being inside; None: the threshold the model card calibrated for the prompt's structure
    # (its vocabulary entry's "mask_threshold", chosen on validation scans by training.calibrate), else 0.5
    "mask_threshold": None,
    "min_component_ml": 0.05,  # 3D components smaller than this are removed
    "min_slices": 2,  # 3D components spanning fewer slices are removed
    "min_component_fraction": 0.1,  # and those with less than this fraction of the largest kept one's voxels
    "fill_holes": True,  # slice by slice, of solid structures (not of those the card marks "fill_holes": false)
    # keep the largest 3D component only; None: as the model card's vocabulary entry says (``training.calibrate``
    # marks the one-piece structures whose validation scans gained from it), else False
    "largest_only": None,
    # coarse-to-fine decoding: every n-th slice first (None: about every 6 mm), then only across the target's box
    "slice_stride": None,
    # fine pass: one decoded slice per this many model pixels (a whole number) along each plane's normal, the rest
    # interpolated (None: 1 for one view, 2 when views are fused)
    "fine_pixels": None,
    "use_cache": True,  # False: re-encode the volume (the naive path, for comparisons)
    # a prompt naming nothing in the card's vocabulary (no name/synonym in it, and its sentence embedding less similar
    # than this to every vocabulary name) is reported not found without segmenting; 0 turns the check off
    "vocabulary_gate": 0.65,
    # "matched": a prompt that names a vocabulary structure (however long the sentence around it) is given to the
    # model as that structure's name; "raw": the model reads the prompt as typed
    "prompt_text": "matched",
}


def resolve_options(options: Dict[str, Any], planes: Sequence[str], card: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` over :data:`DEFAULT_OPTIONS`, checked (unknown names: TypeError; bad values: ValueError naming
    the option), with the views (``planes``: the card's when none are given) and view weights resolved.

    Example:
        >>> resolve_options({"slice_axis": "coronal"}, ("axial",), {})["views"]
        ('coronal',)
    """
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"unknown segment options {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    opts = dict(DEFAULT_OPTIONS, **options)
    if opts["slice_axis"] is not None:
        opts["views"] = (check_axis(opts["slice_axis"]),)
    views = opts["views"] if opts["views"] is not None else planes
    if isinstance(views, str):
        views = (views,)
    views = tuple(dict.fromkeys(check_axis(v) for v in views))
    if not views:
        raise ValueError(f"views must name at least one of {SLICE_AXES}")
    opts["views"] = views
    opts["slice_axis"] = views[0]
    weights = dict(DEFAULT_WEIGHTS, **(card.get("input", {}).get("view_weights") or {}))
    weights.update(opts["view_weights"] or {})
    opts["view_weights"] = {p: float(weights.get(p, 1.0)) for p in views}
    if opts["prompt_text"] not in ("matched", "raw"):
        raise ValueError("prompt_text must be 'matched' or 'raw'")
    for key in ("slice_stride", "fine_pixels"):
        value = opts[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{key} must be a whole number >= 1 or None, got {value!r}")
    threshold = opts["mask_threshold"]
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0
    ):
        raise ValueError(f"mask_threshold must be a number from 0 to 1 or None, got {threshold!r}")
    fraction = opts["min_component_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"min_component_fraction must be a number from 0 to 1, got {fraction!r}")
    if opts["largest_only"] is not None and not isinstance(opts["largest_only"], bool):
        got = opts["largest_only"]
        raise ValueError(f"largest_only must be True, False or None (the card's choice), got {got!r}")
    if opts["ct_window"] is not None:
        resolve_window(opts["ct_window"])
    if isinstance(opts["ct_window"], (list, tuple)):
        opts["ct_window"] = tuple(float(v) for v in opts["ct_window"])
    return opts
