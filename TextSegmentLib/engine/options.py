"""Segment options: the defaults and their checks (the one place they are checked), resolved against a model card
(planes, view weights)."""

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..imaging import CT_WINDOWS
from .fusion import DEFAULT_WEIGHTS
from .volume import SLICE_AXES, check_axis

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
    # also segment the volume mirrored left-right (left and right swapped in the text) and average the two fused
    # probabilities (+0.008 Dice on the validation variants; a first prompt +0.4 s, further ones 1.7x); None: as the
    # model card's ``input.mirror`` says, else False. Only for prompts given to the model as a vocabulary name
    # (``prompt_text="matched"``): a text as typed cannot be mirrored reliably
    "mirror": None,
    # edge voxels whose intensity lies more than this many robust standard deviations from the segment's inside are
    # trimmed (engine/trim.py); None: as the structure's vocabulary entry says (``"trim_outliers"``, chosen by
    # ``training.calibrate``), else no trimming; 0 turns it off for every prompt of the call
    "trim_outliers": None,
}


#: the option checks, in one place (the application layer's request validation uses them too)
_PROBABILITIES = ("presence_threshold", "mask_threshold", "vocabulary_gate", "min_component_fraction")
_COUNTS = ("min_slices", "slice_stride", "fine_pixels")
_FLAGS = ("fill_holes", "largest_only", "use_cache", "mirror")
#: None: the model card or the engine decides
_AUTO = ("mask_threshold", "largest_only", "slice_stride", "fine_pixels", "mirror", "trim_outliers")


def check_ct_window(window: Any) -> Optional[Union[str, Tuple[float, float]]]:
    """None ("auto" too), a built-in window name, or (level, width) with finite numbers and width > 0; ValueError
    naming the problem otherwise.

    Example:
        >>> check_ct_window("lung"), check_ct_window([40, 400])
        ('lung', (40.0, 400.0))
    """
    if window is None or window == "auto":
        return None
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise ValueError(f"CT window {window!r} is unknown; use one of {list(CT_WINDOWS)} or LEVEL,WIDTH")
        return window
    try:
        level, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"CT window {window!r} must be a name or (level, width)") from None
    if not (math.isfinite(level) and math.isfinite(width)):
        raise ValueError(f"CT window level {level} and width {width} must be finite numbers (HU)")
    if width <= 0:
        raise ValueError(f"CT window width must be positive, got {width}")
    return (level, width)


def check_options(options: Dict[str, Any]) -> Dict[str, Any]:
    """Segment options checked: unknown names TypeError, bad values ValueError naming the option; returns them with
    the CT window normalised (the defaults are not filled in: see :func:`resolve_options`).

    Example:
        >>> check_options({"ct_window": "auto", "presence_threshold": 0.3})
        {'ct_window': None, 'presence_threshold': 0.3}
    """
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(f"unknown segment options {unknown}; known: {sorted(DEFAULT_OPTIONS)}")
    out = dict(options)
    if out.get("slice_axis") is not None:
        check_axis(out["slice_axis"])
    if out.get("views") is not None:
        views = (out["views"],) if isinstance(out["views"], str) else tuple(out["views"])
        if not views:
            raise ValueError(f"views must name at least one of {SLICE_AXES}")
        for v in views:
            check_axis(v)
    if "ct_window" in out:
        out["ct_window"] = check_ct_window(out["ct_window"])
    if out.get("modality") is not None and str(out["modality"]).upper() not in ("CT", "MR"):
        raise ValueError(f"modality {out['modality']!r} must be 'CT' or 'MR'")
    if out.get("prompt_text", "matched") not in ("matched", "raw"):
        raise ValueError("prompt_text must be 'matched' or 'raw'")
    for key in _PROBABILITIES:
        value = out.get(key, DEFAULT_OPTIONS[key])
        if value is None and key in _AUTO:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{key} must be a number from 0 to 1{' or None' if key in _AUTO else ''}, got {value!r}")
    for key in ("min_component_ml", "trim_outliers"):
        value = out.get(key, DEFAULT_OPTIONS[key])
        if value is None and key in _AUTO:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < math.inf:
            raise ValueError(f"{key} must be a finite number >= 0{' or None' if key in _AUTO else ''}, got {value!r}")
    for key in _COUNTS:
        value = out.get(key, DEFAULT_OPTIONS[key])
        if value is None and key in _AUTO:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a whole number >= 1{' or None' if key in _AUTO else ''}, got {value!r}")
    for key in _FLAGS:
        value = out.get(key, DEFAULT_OPTIONS[key])
        if not isinstance(value, bool) and not (key in _AUTO and value is None):
            auto = " or None (the model card's choice)" if key in _AUTO else ""
            raise ValueError(f"{key} must be true or false{auto}, got {value!r}")
    weights = out.get("view_weights")
    if weights is not None:
        if not isinstance(weights, dict):
            raise ValueError(f"view_weights must be {{plane: weight}}, got {weights!r}")
        for plane, w in weights.items():
            check_axis(plane)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) < math.inf:
                raise ValueError(f"view weight of {plane} must be a finite number >= 0, got {w!r}")
    return out


def resolve_options(options: Dict[str, Any], planes: Sequence[str], card: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` over :data:`DEFAULT_OPTIONS`, checked by :func:`check_options` (unknown names: TypeError; bad
    values: ValueError naming the option), with the views (``planes``: the card's when none are given) and view
    weights resolved.

    Example:
        >>> resolve_options({"slice_axis": "coronal"}, ("axial",), {})["views"]
        ('coronal',)
    """
    opts = dict(DEFAULT_OPTIONS, **check_options(options))
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
    if opts["mirror"] is None:
        opts["mirror"] = bool(card.get("input", {}).get("mirror", False))
    return opts
