"""Prompt name -> Slicer terminology entry and colour, from the data file ``Resources/terminology.json``.

A segment named after a prompt gets standard codes (SNOMED CT, as Slicer's terminology module writes them) and the
usual colour when the prompt names a known structure ("liver", "Left kidney", "the right adrenal gland"); any other
prompt gets a stable colour derived from its text, so the same prompt is always drawn the same way.
"""

import colorsys
import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

Code = Sequence[str]
_LATERALITY = {"left": "left", "right": "right", "l": "left", "r": "right"}


@dataclass(frozen=True)
class TerminologyMatch:
    """What a prompt maps to: ``color`` in 0..1 RGB, ``entry`` a Slicer terminology string or ``None``."""

    color: Tuple[float, float, float]
    entry: Optional[str]
    structure: Optional[str]
    laterality: Optional[str]


def terminology_path() -> Path:
    """The terminology data file: ``Resources/terminology.json`` next to the package (source tree or Slicer build)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "Resources" / "terminology.json", here / "Resources" / "terminology.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"terminology.json not found next to {here}")


@lru_cache(maxsize=4)
def load_terminology(path: Optional[str] = None) -> Dict[str, Any]:
    """Read (and cache) the terminology data file."""
    with open(path or terminology_path(), encoding="utf-8") as fh:
        return json.load(fh)


def normalize(prompt: str) -> str:
    """Lower case, punctuation and underscores to spaces, single spaces, no leading article.

    Example:
        >>> normalize("  The Left_Kidney. ")
        'left kidney'
    """
    text = re.sub(r"[^0-9a-z]+", " ", prompt.lower()).strip()
    return re.sub(r"^(the|a|an) ", "", text)


def split_laterality(text: str) -> Tuple[str, Optional[str]]:
    """Remove one laterality word (left/right, first or last) from a normalised name.

    Example:
        >>> split_laterality("kidney left"), split_laterality("right lung"), split_laterality("liver")
        (('kidney', 'left'), ('lung', 'right'), ('liver', None))
    """
    words = text.split()
    if len(words) > 1 and words[0] in ("left", "right"):
        return " ".join(words[1:]), words[0]
    if len(words) > 1 and words[-1] in _LATERALITY:
        return " ".join(words[:-1]), _LATERALITY[words[-1]]
    return text, None


def _code(code: Optional[Code]) -> str:
    return "^".join(code) if code else "^^"


def _entry(data: Dict[str, Any], structure: Dict[str, Any], laterality: Optional[str]) -> Optional[str]:
    if not structure.get("type"):
        return None
    category = data["categories"][structure.get("category", "anatomy")]
    modifier = data["modifiers"].get(laterality) if laterality else None
    parts = [
        data["context"],
        _code(category),
        _code(structure["type"]),
        _code(modifier),
        data["anatomic_context"],
        "^^",
        "^^",
    ]
    return "~".join(parts)


def fallback_color(prompt: str) -> Tuple[float, float, float]:
    """A stable, saturated colour from the prompt text (same prompt, same colour)."""
    digest = hashlib.sha1(normalize(prompt).encode("utf-8")).digest()
    hue = digest[0] / 255.0
    return tuple(float(c) for c in colorsys.hsv_to_rgb(hue, 0.65, 0.9))  # type: ignore[return-value]


def _index(data: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for structure in data["structures"]:
        for name in structure["names"]:
            out[normalize(name)] = structure
    return out


def match_prompt(prompt: str, data: Optional[Dict[str, Any]] = None) -> TerminologyMatch:
    """Terminology and colour for a prompt.

    Example:
        >>> m = match_prompt("Left kidney")
        >>> m.structure, m.laterality, "64033007" in m.entry and "7771000" in m.entry
        ('kidney', 'left', True)
        >>> match_prompt("the odd thing").entry is None
        True
    """
    data = data or load_terminology()
    index = _index(data)
    text = normalize(prompt)
    structure = index.get(text)
    laterality = None
    if structure is None:
        base, side = split_laterality(text)
        candidate = index.get(base)
        if candidate is not None and (side is None or candidate.get("laterality")):
            structure, laterality = candidate, side
    if structure is None:
        return TerminologyMatch(fallback_color(prompt), None, None, None)
    color = tuple(float(c) / 255.0 for c in structure["color"][:3])
    return TerminologyMatch(color, _entry(data, structure, laterality), normalize(structure["names"][0]), laterality)  # type: ignore[arg-type]


def known_names(data: Optional[Dict[str, Any]] = None) -> List[str]:
    """All structure names of the data file (used for prompt completion next to the model's vocabulary)."""
    data = data or load_terminology()
    return [name for s in data["structures"] for name in s["names"]]
