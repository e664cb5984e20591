"""Slicer terminology: codes and colours of the structures a prompt names (``resources/terminology.json``), a stable
colour for anything else, and the tags TextSegment writes on a segment.

Example:
    >>> terminology_for(["left", "kidney"], "left")[0].split("~")[3]
    'SCT^7771000^Left'
"""

import colorsys
import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .text import normalize, safe_text

log = logging.getLogger(__name__)

#: segment tags written by TextSegment (on segments in Slicer and in .seg.nrrd files)
TAG_PROMPT, TAG_FOUND, TAG_CONFIDENCE, TAG_VOLUME, TAG_READING = (
    "TextSegment.Prompt",
    "TextSegment.Found",
    "TextSegment.Confidence",
    "TextSegment.VolumeMl",
    "TextSegment.Reading",
)
Color = Tuple[float, float, float]


def terminology_path() -> Path:
    """The terminology data file shipped inside the package (``TextSegmentLib/resources/terminology.json``)."""
    from ..resources import TERMINOLOGY_FILE

    if not TERMINOLOGY_FILE.is_file():
        raise FileNotFoundError(f"{TERMINOLOGY_FILE} is missing: reinstall TextSegmentLib")
    return TERMINOLOGY_FILE


@lru_cache(maxsize=4)
def load_terminology(path: Optional[str] = None) -> Dict[str, Any]:
    """Read (and cache) the terminology data file."""
    with open(path or terminology_path(), encoding="utf-8") as fh:
        return json.load(fh)


def default_terminology() -> Optional[Dict[str, Any]]:
    """The terminology data, or None (with a warning) when the file cannot be read."""
    try:
        return load_terminology()
    except (OSError, ValueError) as exc:
        log.warning("the terminology file cannot be read (%s); segments get colours from their names only", exc)
        return None


def fallback_color(prompt: str) -> Color:
    """A stable, saturated colour from the prompt text (same prompt, same colour)."""
    digest = hashlib.sha1(normalize(prompt).encode("utf-8")).digest()
    return tuple(float(c) for c in colorsys.hsv_to_rgb(digest[0] / 255.0, 0.65, 0.9))  # type: ignore[return-value]


def _code(code: Optional[Sequence[str]]) -> str:
    return "^".join(code) if code else "^^"


def _entry(data: Dict[str, Any], structure: Dict[str, Any], side: Optional[str]) -> Optional[str]:
    if not structure.get("type"):
        return None
    category = data["categories"][structure.get("category", "anatomy")]
    modifier = data["modifiers"].get(side) if side else None
    parts = [data["context"], _code(category), _code(structure["type"]), _code(modifier), data["anatomic_context"]]
    return "~".join(parts + ["^^", "^^"])


def _match(key: str, side: Optional[str], rest: str, data: Dict[str, Any]):
    """(structure, side used) for a prompt's normalised text, or (None, None)."""
    index = {normalize(name): s for s in data["structures"] for name in s["names"]}
    if key in index:  # a structure whose name holds a side word ("left ventricle") wins over taking the side off
        return index[key], None
    candidate = index.get(rest)
    if candidate is not None and (side is None or candidate.get("laterality")):
        return candidate, side if side in ("left", "right") else None
    return None, None


def terminology_for(
    found: Sequence[str], side: Optional[str], rest: Optional[Sequence[str]] = None, data: Optional[Dict] = None
) -> Tuple[Optional[str], Optional[str], Optional[Color]]:
    """(terminology entry, structure name, colour) of words ``found`` (``rest``: the same without side words) on
    ``side``; (None, None, None) when the terminology does not know them."""
    data = data if data is not None else default_terminology()
    if not data:
        return None, None, None
    rest = list(rest) if rest is not None else [w for w in found if w not in ("left", "right", "both")]
    structure, used = _match(" ".join(found), side, " ".join(rest), data)
    if structure is None:
        return None, None, None
    color = tuple(float(c) / 255.0 for c in structure["color"][:3])
    return _entry(data, structure, used), normalize(structure["names"][0]), color  # type: ignore[return-value]


def known_names(data: Optional[Dict[str, Any]] = None) -> List[str]:
    """All structure names of the terminology file (for prompt completion next to the model's vocabulary)."""
    data = data or default_terminology() or {"structures": []}
    return [name for s in data["structures"] for name in s["names"]]


def segment_tags(query: Any, found: bool, confidence: float, volume_ml: float) -> Dict[str, str]:
    """The tags TextSegment writes on a segment: terminology entry (when known), prompt, how it was read, found,
    confidence, volume. ``query``: the prompt's :class:`~.query.Query` (a plain prompt text is read without a
    vocabulary).

    Example:
        >>> segment_tags("liver", True, 0.9, 12.5)["TextSegment.Found"]
        'true'
    """
    if isinstance(query, str):
        from .query import parse_query

        query = parse_query(query)
    tags = {"TerminologyEntry": query.entry} if query.entry else {}
    tags.update({
        TAG_PROMPT: safe_text(query.prompt),
        TAG_READING: safe_text(query.reading),
        TAG_FOUND: "true" if found else "false",
        TAG_CONFIDENCE: f"{confidence:.3f}",
        TAG_VOLUME: f"{volume_ml:.3f}",
    })  # fmt: skip
    return tags
