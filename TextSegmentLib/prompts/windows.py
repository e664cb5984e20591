"""CT windows: the built-in names, the anatomy keywords that choose one, and a model card's own windows.

Example:
    >>> window_for(["left", "lung"]), window_for(["femur"]), window_for(["liver"])
    ('lung', 'bone', 'soft_tissue')
"""

import logging
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

#: the built-in CT windows (level, width) in HU; a model card's ``input.ct_windows`` overrides them
CT_WINDOW_NAMES = ("soft_tissue", "lung", "bone", "brain")
#: keywords -> CT window, used when the vocabulary entry names none
REGION_KEYWORDS = {
    "lung": ("lung", "pulmonary", "airway", "trachea", "bronch", "pleura", "emphysema", "nodule", "lobe"),
    "bone": ("bone", "skull", "cranium", "vertebra", "spine", "rib", "femur", "pelvis", "sacrum", "clavicle",
             "scapula", "humerus", "tibia", "fibula", "sternum", "mandible", "hip", "fracture", "skeleton"),
    "brain": ("brain", "cerebr", "hippocamp", "ventric", "thalam", "caudate", "putamen", "amygdala", "hemorrhage",
              "haemorrhage", "bleed", "cortex", "cerebell", "gyrus", "pallidum", "insula"),
}  # fmt: skip


def _keyword_in(keyword: str, found: Sequence[str]) -> bool:
    """A keyword matches a whole word (or its plural); keywords of 5+ letters also match word beginnings."""
    return any(
        w in (keyword, keyword + "s", keyword + "es") or (len(keyword) >= 5 and w.startswith(keyword)) for w in found
    )


def window_for(found: Sequence[str], entry: Optional[Dict[str, Any]] = None, known: Iterable[str] = ()) -> str:
    """CT window name for an entry (its ``ct_window``/``region``, if a known window) or from region keywords; soft
    tissue otherwise. ``known`` adds window names (a model card's own windows) to the built-in ones."""
    names = set(CT_WINDOW_NAMES) | set(known)
    if entry:
        for key in ("ct_window", "region"):
            if entry.get(key) in names:
                return str(entry[key])
    for window, keys in REGION_KEYWORDS.items():
        if any(_keyword_in(k, found) for k in keys):
            return window
    return "soft_tissue"


def card_windows(card: Optional[Dict[str, Any]]) -> Dict[str, Tuple[float, float]]:
    """The CT windows ``{name: (level, width)}`` of a model card's ``input.ct_windows`` (finite, width > 0); the
    built-in windows for the names the card does not list.

    Example:
        >>> card_windows({"input": {"ct_windows": {"liver": [60, 160]}}})["liver"]
        (60.0, 160.0)
    """
    from ..imaging import CT_WINDOWS

    out = {name: (float(v[0]), float(v[1])) for name, v in CT_WINDOWS.items()}
    raw = ((card or {}).get("input") or {}).get("ct_windows") or {}
    for name, value in raw.items() if isinstance(raw, dict) else ():
        try:
            level, width = (float(v) for v in value)
        except (TypeError, ValueError):
            log.warning("model card CT window %r = %r is not (level, width); the built-in one is used", name, value)
            continue
        if level == level and width == width and abs(level) != float("inf") and 0 < width < float("inf"):
            out[str(name)] = (level, width)
    return out
