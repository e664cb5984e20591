"""A model card's vocabulary read once: its names and synonyms without side words, which structures come in a left
and a right entry (paired), and the longest vocabulary phrase a prompt contains.

Example:
    >>> voc = VocabularyIndex(["left putamen", "right putamen", {"name": "brain", "synonyms": ["encephalon"]}])
    >>> voc.pairs["putamen"], voc.find(["the", "encephalon"]).name
    ({'left': 'left putamen', 'right': 'right putamen'}, 'brain')
"""

import difflib
import json
import threading
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .sides import SIDE_TABLE, read_side
from .text import words

#: plurals that do not end in -s
IRREGULAR_PLURALS = {
    "hippocampi": "hippocampus", "thalami": "thalamus", "nuclei": "nucleus", "putamina": "putamen",
    "amygdalae": "amygdala", "gyri": "gyrus", "hippocampuses": "hippocampus", "thalamuses": "thalamus",
}  # fmt: skip


def entries(vocabulary: Iterable[Any]) -> List[Dict[str, Any]]:
    """The vocabulary's entries as dicts (a plain string is ``{"name": string}``); entries without a name dropped."""
    out = []
    for item in vocabulary or []:
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, dict) and item.get("name"):
            out.append(item)
    return out


def vocabulary_names(vocabulary: Iterable[Any] = ()) -> List[str]:
    """The distinct structure names of a vocabulary, sorted."""
    return sorted({str(e["name"]) for e in entries(vocabulary)})


@dataclass(frozen=True)
class Phrase:
    """A vocabulary name or synonym: its side-free, singular ``words``, the entry ``name``, the entry's ``side``."""

    words: Tuple[str, ...]
    name: str
    side: Optional[str]


class VocabularyIndex:
    """Names and synonyms of a vocabulary without their side words (singular), the paired structures
    (``pairs[base] = {"left": name, "right": name}``) and each sided entry's base."""

    def __init__(self, vocabulary: Iterable[Any] = ()) -> None:
        self.entries = entries(vocabulary)
        self.by_name = {str(e["name"]): e for e in self.entries}
        raw = {w for e in self.entries for n in [e["name"], *e.get("synonyms", [])] for w in words(str(n))}
        self.known = raw - set(SIDE_TABLE)
        self.phrases: List[Phrase] = []
        self.pairs: Dict[str, Dict[str, str]] = {}
        self.base_of: Dict[str, str] = {}
        for e in self.entries:
            name = str(e["name"])
            reading = read_side(words(name), self.known)
            side, rest = reading.side, reading.rest
            if side is None and e.get("laterality") in ("left", "right"):
                side = e["laterality"]
            base = " ".join(self.singular(rest))
            if side in ("left", "right") and base:
                self.pairs.setdefault(base, {})[side] = name
                self.base_of[name] = base
            for text in [name, *e.get("synonyms", [])]:
                nwords = read_side(words(str(text)), self.known).rest
                if nwords:
                    self.phrases.append(Phrase(tuple(self.singular(nwords)), name, side))
        # a base with only one side is not paired; a sided synonym's base ("caudate" of "left caudate") is an alias
        self.pairs = {b: p for b, p in self.pairs.items() if len(p) == 2}
        self.aliases: Dict[str, str] = {}
        for ph in self.phrases:
            base = self.base_of.get(ph.name)
            if base in self.pairs:
                self.aliases.setdefault(" ".join(ph.words), base)

    def singular(self, found: Sequence[str]) -> List[str]:
        """Words with plurals made singular where the singular is a vocabulary word ("putamens" -> "putamen")."""
        out = []
        for w in found:
            if w in IRREGULAR_PLURALS:
                w = IRREGULAR_PLURALS[w]
            elif w not in self.known:
                for cut in (1, 2):
                    if w.endswith("es"[2 - cut :]) and w[:-cut] in self.known:
                        w = w[:-cut]
                        break
            out.append(w)
        return out

    @staticmethod
    def plural(found: Sequence[str]) -> Optional[str]:
        """The first word of ``found`` that is a plural of a structure word (or None)."""
        return next((w for w in found if w in IRREGULAR_PLURALS), None)

    def find(self, found: Sequence[str], side: Optional[str] = None) -> Optional[Phrase]:
        """The longest vocabulary phrase occurring as whole consecutive words in ``found`` (side-free words, made
        singular here); of equal lengths, one of ``side``."""
        text = f" {' '.join(self.singular(found))} "
        best: Optional[Phrase] = None
        best_rank = (0, 0)
        for ph in self.phrases:
            if f" {' '.join(ph.words)} " in text:
                rank = (len(ph.words), int(ph.side == side))
                if rank > best_rank:
                    best, best_rank = ph, rank
        return best

    def closest(self, found: Sequence[str], side: Optional[str] = None, cutoff: float = 0.85) -> Optional[Phrase]:
        """The phrase closest in spelling to the whole of ``found`` ("hipocampus"), else one occurring once each word
        is corrected to its closest vocabulary word ("hipocampo izquierdo"), else the best word overlap
        (score >= 0.3, "right superior frontal" -> "right superior frontal gyrus"), else None."""
        key = " ".join(self.singular(found))
        if not key:
            return None
        texts = {" ".join(ph.words): ph for ph in self.phrases}
        close = difflib.get_close_matches(key, list(texts), n=1, cutoff=cutoff)
        if close:
            return self._on_side(texts[close[0]], side)
        corrected = [self.correct(w) for w in key.split()]
        if corrected != key.split():
            found = self.find(corrected, side)
            if found is not None:
                return self._on_side(found, side)
        best: Optional[Phrase] = None
        best_rank = (0.0, 0)
        have = set(key.split())
        for ph in self.phrases:
            common = len(set(ph.words) & have)
            rank = (0.8 * common / max(len(set(ph.words) | have), 1), int(ph.side == side))
            if rank > best_rank:
                best, best_rank = ph, rank
        return best if best is not None and best_rank[0] >= 0.3 else None

    def correct(self, word: str, cutoff: float = 0.8) -> str:
        """A word of 5+ letters the vocabulary does not know -> its closest vocabulary word ("hipocampo" ->
        "hippocampus"), else the word itself."""
        if len(word) < 5 or word in self.known:
            return word
        close = difflib.get_close_matches(word, sorted(self.known), n=1, cutoff=cutoff)
        return close[0] if close else word

    def _on_side(self, phrase: Phrase, side: Optional[str]) -> Phrase:
        base = self.base_of.get(phrase.name)
        if side in ("left", "right") and base in self.pairs:
            return Phrase(phrase.words, self.pairs[base][side], side)
        return phrase

    def base(self, phrase: Phrase) -> Optional[str]:
        """The paired base a phrase names ("caudate" -> "caudate nucleus"), or None for an unpaired structure. A
        phrase that is itself an unsided structure of the vocabulary ("cerebellum", whose hemispheres have the
        synonyms "left/right cerebellum") names that structure, not both sides of another one."""
        if phrase.name in self.base_of and self.base_of[phrase.name] in self.pairs:
            return self.base_of[phrase.name]
        exact = " ".join(phrase.words) == phrase.name.lower()  # the entry's own name, not a plural or a synonym
        if exact and phrase.side is None and phrase.name in self.by_name and phrase.name not in self.base_of:
            return None
        key = " ".join(phrase.words)
        return key if key in self.pairs else self.aliases.get(key)


_INDEXES: Dict[Tuple[str, ...], VocabularyIndex] = {}
_LOCK = threading.Lock()  # the Slicer worker and the GUI thread may read prompts at the same time


def index_of(vocabulary: Iterable[Any]) -> VocabularyIndex:
    """A (cached) :class:`VocabularyIndex` of a vocabulary (the same vocabulary is indexed once)."""
    items = list(vocabulary or ())
    key = tuple(json.dumps(e, sort_keys=True, default=str) for e in items)
    with _LOCK:
        index = _INDEXES.get(key)
        if index is None:
            while len(_INDEXES) >= 16:
                _INDEXES.pop(next(iter(_INDEXES)))
            index = _INDEXES[key] = VocabularyIndex(items)
        return index


def find_term(prompt: str, vocabulary: Iterable[Any] = ()) -> Optional[str]:
    """The vocabulary name whose name or synonym (side words removed) occurs as whole consecutive words in a free-form
    prompt; the longest occurrence wins, and an entry of the prompt's side is preferred. None if none occurs.

    Example:
        >>> voc = [{"name": "left hippocampus", "synonyms": ["hippocampus L"]}, "right hippocampus", "brain"]
        >>> find_term("I am looking for the left hippocampus", voc), find_term("segment the liver", voc)
        ('left hippocampus', None)
    """
    index = index_of(vocabulary)
    reading = read_side(words(prompt), index.known)
    phrase = index.find(reading.rest, reading.side)
    return phrase.name if phrase else None
