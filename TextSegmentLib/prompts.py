"""Prompt text: cleaning, words and side words, the model card's vocabulary, CT windows, Slicer terminology, tags.

One module for everything a prompt means, so that every part of TextSegment reads a prompt the same way:

- :func:`clean_prompt` refuses control characters and collapses white space (prompts end up in file headers);
- :func:`split_side` takes the one set of side words off (``left``/``l``/``lt``/``sinister``..., ``right``/``r``/
  ``rt``/``dexter``..., ``both``/``bilateral``);
- :func:`match_prompt` matches a prompt to a model card's ``vocabulary`` (names, synonyms; entries may carry
  ``region``/``ct_window``) and to the Slicer terminology file ``resources/terminology.json`` (codes and colour);
- :func:`card_windows` reads the CT windows of a model card (they override the built-in table);
- :func:`segment_tags` gives the tags TextSegment writes on a segment (in Slicer and in ``.seg.nrrd`` files).

Example:
    >>> vocabulary = [{"name": "hippocampus", "synonyms": ["hippocampal formation"]}]
    >>> m = match_prompt("the Left hippocampal formation", vocabulary)
    >>> m.name, m.side, m.window
    ('hippocampus', 'left', 'brain')
"""

import colorsys
import hashlib
import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

#: the side words (whole words, any case); the first one in a prompt gives its side
SIDE_WORDS = {
    **dict.fromkeys(("left", "l", "lt", "sinister", "sinistra", "sinistral"), "left"),
    **dict.fromkeys(("right", "r", "rt", "dexter", "dextra", "dextral"), "right"),
    **dict.fromkeys(("both", "bilateral", "bilaterally", "bilat"), "both"),
}
#: filler words that never change what a prompt names
STOP_WORDS = {"the", "a", "an", "of", "in", "on", "segment", "please", "all", "my", "this", "entire", "whole", "sided"}
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
#: segment tags written by TextSegment (on segments in Slicer and in .seg.nrrd files)
TAG_PROMPT, TAG_FOUND, TAG_CONFIDENCE, TAG_VOLUME = (
    "TextSegment.Prompt",
    "TextSegment.Found",
    "TextSegment.Confidence",
    "TextSegment.VolumeMl",
)


@dataclass(frozen=True)
class PromptMatch:
    """What a prompt means. ``name``: the vocabulary name (None if unknown); ``side``: 'left', 'right', 'both' or
    None; ``window``: CT window name; ``score``: 1 exact or synonym, <1 partial word overlap, 0 no match;
    ``color``: RGB 0..1; ``entry``: a Slicer terminology string or None; ``structure``: the terminology name."""

    prompt: str
    name: Optional[str]
    side: Optional[str]
    window: str
    score: float
    color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    entry: Optional[str] = None
    structure: Optional[str] = None


# --- text ------------------------------------------------------------------------------------------------------
def bad_characters(text: str) -> List[str]:
    """Control and format characters (Unicode categories Cc, Cf) left after white space is collapsed."""
    collapsed = " ".join(text.split())
    return sorted({c for c in collapsed if unicodedata.category(c) in ("Cc", "Cf")})


def clean_prompt(text: Any) -> str:
    """A prompt with white space collapsed; ValueError for non-text, empty prompts or control characters.

    Example:
        >>> clean_prompt("  left\\n kidney ")
        'left kidney'
    """
    if not isinstance(text, str):
        raise ValueError(f"prompt {text!r} is a {type(text).__name__}, not text; give each prompt as a string")
    bad = bad_characters(text)
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ValueError(f"prompt {text!r} holds the control character(s) {codes}; type the prompt as plain text")
    out = " ".join(text.split())
    if not out:
        raise ValueError(f"prompt {text!r} is empty; every prompt must name what to segment")
    return out


def safe_text(text: Any) -> str:
    """``text`` with control/format characters replaced by spaces (for file headers, whatever the caller passed)."""
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in str(text)).split())


def words(text: str) -> List[str]:
    """Lower-case words without punctuation or filler words."""
    found = re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))
    return [w for w in found if w not in STOP_WORDS]


def normalize(text: str) -> str:
    """The words of ``text`` as one string (the key used for every match).

    Example:
        >>> normalize("  The Left_Kidney. ")
        'left kidney'
    """
    return " ".join(words(text))


def split_side(found: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """Take the side words off: (side, remaining words); the first side word gives the side, 'both' wins.

    Example:
        >>> split_side(["kidney", "rt"]), split_side(["both", "lungs"])
        (('right', ['kidney']), ('both', ['lungs']))
    """
    side: Optional[str] = None
    rest: List[str] = []
    for w in found:
        value = SIDE_WORDS.get(w)
        if value == "both":
            side = "both"
        elif value is not None and side is None:
            side = value
        elif value is None:
            rest.append(w)
    return side, rest


# --- the model card's vocabulary -------------------------------------------------------------------------------
def _entries(vocabulary: Iterable[Any]) -> List[Dict[str, Any]]:
    out = []
    for item in vocabulary or []:
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, dict) and item.get("name"):
            out.append(item)
    return out


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


@lru_cache(maxsize=8192)
def _side_words(name: str) -> Tuple[Optional[str], List[str]]:
    """``split_side(words(name))`` of a vocabulary name or synonym, computed once (every prompt scans them all);
    the list is shared: read it, do not change it."""
    return split_side(words(name))


def _vocabulary_match(
    side_free: List[str], vocabulary: Iterable[Any], side: Optional[str] = None
) -> Tuple[Optional[Dict[str, Any]], float]:
    """The best-scoring entry for the side-free words; of equal scores, an entry of the prompt's ``side`` (so that
    "right hippocampus" matches "right hippocampus", not the "left hippocampus" listed first)."""
    key = " ".join(side_free)
    best: Optional[Dict[str, Any]] = None
    best_rank = (0.0, 0)
    for entry in _entries(vocabulary):
        entry_side, _ = _side_words(str(entry["name"]))
        for name in [entry["name"]] + list(entry.get("synonyms", [])):
            _, nwords = _side_words(str(name))
            if not nwords:
                continue
            if " ".join(nwords) == key:
                score = 1.0
            else:
                common = len(set(nwords) & set(side_free))
                score = 0.8 * common / max(len(set(nwords) | set(side_free)), 1)
            rank = (score, int(side is not None and entry_side == side))
            if rank > best_rank:
                best, best_rank = entry, rank
    return (best, best_rank[0]) if best is not None and best_rank[0] >= 0.3 else (None, 0.0)


def find_term(prompt: str, vocabulary: Iterable[Any] = ()) -> Optional[str]:
    """The vocabulary name whose name or synonym (side words removed) occurs as whole consecutive words in a free-form
    prompt; the longest occurrence wins, and an entry of the prompt's side is preferred. None if none occurs.

    Example:
        >>> voc = [{"name": "left hippocampus", "synonyms": ["hippocampus L"]}, "right hippocampus", "brain"]
        >>> find_term("I am looking for the left hippocampus", voc), find_term("segment the liver", voc)
        ('left hippocampus', None)
    """
    side, found = split_side(words(prompt))
    text = f" {' '.join(found)} "
    best: Optional[Tuple[int, int, str]] = None
    for entry in _entries(vocabulary):
        entry_side, _ = _side_words(str(entry["name"]))
        for name in [entry["name"]] + list(entry.get("synonyms", [])):
            _, nwords = _side_words(str(name))
            if nwords and f" {' '.join(nwords)} " in text:
                rank = (len(nwords), int(entry_side == side))
                if best is None or rank > best[:2]:
                    best = (rank[0], rank[1], str(entry["name"]))
    return best[2] if best else None


def vocabulary_names(vocabulary: Iterable[Any] = ()) -> List[str]:
    """The distinct structure names of a vocabulary, sorted."""
    return sorted({str(e["name"]) for e in _entries(vocabulary)})


def card_windows(card: Optional[Dict[str, Any]]) -> Dict[str, Tuple[float, float]]:
    """The CT windows ``{name: (level, width)}`` of a model card's ``input.ct_windows`` (finite, width > 0); the
    built-in windows for the names the card does not list.

    Example:
        >>> card_windows({"input": {"ct_windows": {"liver": [60, 160]}}})["liver"]
        (60.0, 160.0)
    """
    from .imaging import CT_WINDOWS

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


# --- Slicer terminology ----------------------------------------------------------------------------------------
def terminology_path() -> Path:
    """The terminology data file shipped inside the package (``TextSegmentLib/resources/terminology.json``)."""
    from .resources import TERMINOLOGY_FILE

    if not TERMINOLOGY_FILE.is_file():
        raise FileNotFoundError(f"{TERMINOLOGY_FILE} is missing: reinstall TextSegmentLib")
    return TERMINOLOGY_FILE


@lru_cache(maxsize=4)
def load_terminology(path: Optional[str] = None) -> Dict[str, Any]:
    """Read (and cache) the terminology data file."""
    with open(path or terminology_path(), encoding="utf-8") as fh:
        return json.load(fh)


def _terminology() -> Optional[Dict[str, Any]]:
    try:
        return load_terminology()
    except (OSError, ValueError) as exc:
        log.warning("the terminology file cannot be read (%s); segments get colours from their names only", exc)
        return None


def fallback_color(prompt: str) -> Tuple[float, float, float]:
    """A stable, saturated colour from the prompt text (same prompt, same colour)."""
    digest = hashlib.sha1(normalize(prompt).encode("utf-8")).digest()
    return tuple(float(c) for c in colorsys.hsv_to_rgb(digest[0] / 255.0, 0.65, 0.9))  # type: ignore[return-value]


def _code(code: Optional[Sequence[str]]) -> str:
    return "^".join(code) if code else "^^"


def _terminology_entry(data: Dict[str, Any], structure: Dict[str, Any], side: Optional[str]) -> Optional[str]:
    if not structure.get("type"):
        return None
    category = data["categories"][structure.get("category", "anatomy")]
    modifier = data["modifiers"].get(side) if side else None
    parts = [data["context"], _code(category), _code(structure["type"]), _code(modifier), data["anatomic_context"]]
    return "~".join(parts + ["^^", "^^"])


def _terminology_match(key: str, side: Optional[str], rest: str, data: Dict[str, Any]):
    """(structure, side used) for a prompt's normalised text, or (None, None)."""
    index = {normalize(name): s for s in data["structures"] for name in s["names"]}
    if key in index:  # a structure whose name holds a side word ("left ventricle") wins over taking the side off
        return index[key], None
    candidate = index.get(rest)
    if candidate is not None and (side is None or candidate.get("laterality")):
        return candidate, side if side in ("left", "right") else None
    return None, None


def known_names(data: Optional[Dict[str, Any]] = None) -> List[str]:
    """All structure names of the terminology file (for prompt completion next to the model's vocabulary)."""
    data = data or _terminology() or {"structures": []}
    return [name for s in data["structures"] for name in s["names"]]


# --- one match for everything ----------------------------------------------------------------------------------
def match_prompt(
    prompt: str, vocabulary: Iterable[Any] = (), windows: Iterable[str] = (), terminology: Optional[Dict] = None
) -> PromptMatch:
    """Match a prompt to a model card's vocabulary (name, side, CT window) and to Slicer terminology (colour, codes).

    ``windows``: window names a model card defines besides the built-in ones.

    Example:
        >>> voc = [{"name": "hippocampus", "synonyms": ["hippocampal formation"], "lateral": True}, "liver"]
        >>> m = match_prompt("the Left hippocampal formation", voc)
        >>> m.name, m.side, m.window, m.score
        ('hippocampus', 'left', 'brain', 1.0)
        >>> match_prompt("right lung").window, match_prompt("Left kidney").entry.split("~")[3]
        ('lung', 'SCT^7771000^Left')
        >>> match_prompt("hippocampus, right", ["left hippocampus", "right hippocampus"]).name
        'right hippocampus'
    """
    found = words(prompt)
    side, rest = split_side(found)
    entry, score = _vocabulary_match(rest, vocabulary, side)
    name = str(entry["name"]) if entry is not None else None
    window = window_for(rest + (words(name) if name else []), entry, windows)
    data = terminology if terminology is not None else _terminology()
    structure, term_side = _terminology_match(" ".join(found), side, " ".join(rest), data) if data else (None, None)
    if structure is None:
        return PromptMatch(prompt, name, side, window, round(score, 3), fallback_color(prompt))
    color = tuple(float(c) / 255.0 for c in structure["color"][:3])
    term = _terminology_entry(data, structure, term_side)  # type: ignore[arg-type]
    return PromptMatch(prompt, name, side, window, round(score, 3), color, term, normalize(structure["names"][0]))  # type: ignore[arg-type]


def segment_tags(prompt: str, found: bool, confidence: float, volume_ml: float) -> Dict[str, str]:
    """The tags TextSegment writes on a segment: terminology entry (when known), prompt, found, confidence, volume.

    Example:
        >>> segment_tags("liver", True, 0.9, 12.5)["TextSegment.Found"]
        'true'
    """
    match = match_prompt(prompt)
    tags = {"TerminologyEntry": match.entry} if match.entry else {}
    tags.update({
        TAG_PROMPT: safe_text(prompt),
        TAG_FOUND: "true" if found else "false",
        TAG_CONFIDENCE: f"{confidence:.3f}",
        TAG_VOLUME: f"{volume_ml:.3f}",
    })  # fmt: skip
    return tags
