"""Matching a free-text prompt to a model card's vocabulary: synonyms, laterality, and the CT window by region.

A card's ``vocabulary`` is a list whose entries are either names (``"liver"``) or objects
``{"name": "hippocampus", "synonyms": ["hippocampal formation"], "lateral": true, "region": "brain"}``
(``region`` or ``ct_window`` name one of the CT windows: soft_tissue, lung, bone, brain).
Words of laterality (left/right/bilateral, l/r) are split off before matching and returned as ``side``.
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

_SIDES = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}
_BOTH = {"bilateral", "both"}
_STOP = {"the", "a", "an", "of", "in", "on", "segment", "please", "all", "my", "this", "entire", "whole", "sided"}
#: keywords -> CT window, used when the vocabulary entry names none
REGION_KEYWORDS = {
    "lung": ("lung", "pulmonary", "airway", "trachea", "bronch", "pleura", "emphysema", "nodule", "lobe"),
    "bone": (
        "bone",
        "skull",
        "cranium",
        "vertebra",
        "spine",
        "rib",
        "femur",
        "pelvis",
        "sacrum",
        "clavicle",
        "scapula",
        "humerus",
        "tibia",
        "fibula",
        "sternum",
        "mandible",
        "hip",
        "fracture",
        "skeleton",
    ),
    "brain": (
        "brain",
        "cerebr",
        "hippocamp",
        "ventric",
        "thalam",
        "caudate",
        "putamen",
        "amygdala",
        "hemorrhage",
        "haemorrhage",
        "bleed",
        "cortex",
        "cerebell",
        "gyrus",
        "pallidum",
        "insula",
    ),
}


@dataclass(frozen=True)
class PromptMatch:
    """Result of matching one prompt: the vocabulary ``name`` (None if unknown), ``side``, the CT ``window`` name,
    and ``score`` (1 exact or synonym, <1 partial word overlap, 0 no match)."""

    prompt: str
    name: Optional[str]
    side: Optional[str]
    window: str
    score: float


def normalize(text: str) -> List[str]:
    """Lower-case words without punctuation or filler words."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("-", " "))
    return [w for w in words if w not in _STOP]


def split_side(words: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """Split laterality words off: (side, remaining words); side is 'left', 'right', 'both' or None."""
    side: Optional[str] = None
    rest: List[str] = []
    for w in words:
        if w in _SIDES and side is None:
            side = _SIDES[w]
        elif w in _BOTH:
            side = "both"
        else:
            rest.append(w)
    return side, rest


def _entries(vocabulary: Iterable[Any]) -> List[Dict[str, Any]]:
    out = []
    for item in vocabulary or []:
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, dict) and item.get("name"):
            out.append(item)
    return out


def window_for(words: Sequence[str], entry: Optional[Dict[str, Any]] = None) -> str:
    """CT window name for an entry (its ``ct_window``/``region``) or from region keywords; soft tissue otherwise."""
    if entry:
        for key in ("ct_window", "region"):
            value = entry.get(key)
            if value in ("soft_tissue", "lung", "bone", "brain"):
                return value
    for window, keys in REGION_KEYWORDS.items():
        if any(_keyword_in(k, words) for k in keys):
            return window
    return "soft_tissue"


def _keyword_in(keyword: str, words: Sequence[str]) -> bool:
    """A keyword matches a whole word (or its plural); keywords of 5+ letters also match word beginnings."""
    return any(
        w in (keyword, keyword + "s", keyword + "es") or (len(keyword) >= 5 and w.startswith(keyword)) for w in words
    )


def match_prompt(prompt: str, vocabulary: Iterable[Any] = ()) -> PromptMatch:
    """Match a prompt to the vocabulary.

    Example:
        >>> voc = [{"name": "hippocampus", "synonyms": ["hippocampal formation"], "lateral": True}, "liver"]
        >>> m = match_prompt("the Left hippocampal formation", voc)
        >>> m.name, m.side, m.window, m.score
        ('hippocampus', 'left', 'brain', 1.0)
        >>> match_prompt("right lung", []).window
        'lung'
    """
    side, words = split_side(normalize(prompt))
    key = " ".join(words)
    best: Optional[Dict[str, Any]] = None
    best_score = 0.0
    for entry in _entries(vocabulary):
        names = [entry["name"]] + list(entry.get("synonyms", []))
        for name in names:
            _, nwords = split_side(normalize(str(name)))
            if not nwords:
                continue
            if " ".join(nwords) == key:
                score = 1.0
            else:
                common = len(set(nwords) & set(words))
                score = 0.8 * common / max(len(set(nwords) | set(words)), 1)
            if score > best_score:
                best, best_score = entry, score
    name = str(best["name"]) if best is not None and best_score >= 0.3 else None
    window = window_for(words + (normalize(name) if name else []), best if name else None)
    return PromptMatch(prompt, name, side, window, round(best_score if name else 0.0, 3))


def find_term(prompt: str, vocabulary: Iterable[Any] = ()) -> Optional[str]:
    """The vocabulary name whose name or synonym (side words removed) occurs as whole consecutive words in a free-form
    prompt; the longest occurrence wins, and an entry of the prompt's side is preferred. None if none occurs.

    Example:
        >>> voc = [{"name": "left hippocampus", "synonyms": ["hippocampus L"]}, "right hippocampus", "brain"]
        >>> find_term("I am looking for the left hippocampus", voc), find_term("segment the liver", voc)
        ('left hippocampus', None)
    """
    side, words = split_side(normalize(prompt))
    text = f" {' '.join(words)} "
    best: Optional[Tuple[int, int, str]] = None
    for entry in _entries(vocabulary):
        entry_side, _ = split_side(normalize(str(entry["name"])))
        for name in [entry["name"]] + list(entry.get("synonyms", [])):
            _, nwords = split_side(normalize(str(name)))
            if nwords and f" {' '.join(nwords)} " in text:
                rank = (len(nwords), int(entry_side == side))
                if best is None or rank > best[:2]:
                    best = (rank[0], rank[1], str(entry["name"]))
    return best[2] if best else None


def vocabulary_names(vocabulary: Iterable[Any] = ()) -> List[str]:
    """The distinct structure names of a vocabulary, sorted."""
    return sorted({str(e["name"]) for e in _entries(vocabulary)})
