"""Prompt text and what it means: one typed :class:`Query` per prompt.

- :mod:`.text`: cleaning (control characters refused), words, accents folded;
- :mod:`.sides`: side words in every common spelling, abbreviation and language, close misspellings, warnings;
- :mod:`.vocabulary`: a model card's vocabulary (names, synonyms, paired structures);
- :mod:`.groups`, :mod:`.findings`, :mod:`.spatial`: groups people name, findings an anatomy model refuses,
  the spatial requests TextSegment answers;
- :mod:`.terminology`: Slicer terminology codes and colours, segment tags;
- :mod:`.windows`: CT windows;
- :mod:`.query`: :func:`parse_query`, the one reading of a prompt that every part of TextSegment uses.

Example:
    >>> vocabulary = [{"name": "hippocampus", "synonyms": ["hippocampal formation"]}]
    >>> m = match_prompt("the Left hippocampal formation", vocabulary)
    >>> m.name, m.side, m.window
    ('hippocampus', 'left', 'brain')
"""

from typing import Any, Dict, Iterable, Optional

from .findings import FINDINGS, finding_in
from .groups import GROUPS, group_in
from .query import KINDS, Query, parse_queries, parse_query
from .sides import SIDE_TABLE, SIDE_WORDS, SideReading, mirror_sides, read_side, split_side
from .spatial import UNSUPPORTED_REASON, read_spatial
from .terminology import (
    TAG_CONFIDENCE,
    TAG_FOUND,
    TAG_PROMPT,
    TAG_READING,
    TAG_VOLUME,
    fallback_color,
    known_names,
    load_terminology,
    segment_tags,
    terminology_path,
)
from .text import STOP_WORDS, bad_characters, clean_prompt, fold, normalize, safe_text, words
from .vocabulary import VocabularyIndex, find_term, index_of, vocabulary_names
from .windows import CT_WINDOW_NAMES, REGION_KEYWORDS, card_windows, window_for

#: compatibility name: a query has every field the former match had (prompt, name, side, window, score, colour...)
PromptMatch = Query


def match_prompt(
    prompt: str, vocabulary: Iterable[Any] = (), windows: Iterable[str] = (), terminology: Optional[Dict] = None
) -> Query:
    """:func:`parse_query` (the former name). ``.name`` is the vocabulary term, ``.side`` the side.

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
    return parse_query(prompt, vocabulary, windows, terminology)


__all__ = [
    "CT_WINDOW_NAMES", "FINDINGS", "GROUPS", "KINDS", "REGION_KEYWORDS", "SIDE_TABLE", "SIDE_WORDS", "STOP_WORDS",
    "TAG_CONFIDENCE", "TAG_FOUND", "TAG_PROMPT", "TAG_READING", "TAG_VOLUME", "UNSUPPORTED_REASON", "PromptMatch",
    "Query", "SideReading", "VocabularyIndex", "bad_characters", "card_windows", "clean_prompt", "fallback_color",
    "find_term", "finding_in", "fold", "group_in", "index_of", "known_names", "load_terminology", "match_prompt",
    "normalize", "parse_queries", "parse_query", "read_side", "read_spatial", "safe_text", "segment_tags",
    "mirror_sides", "split_side", "terminology_path", "vocabulary_names", "window_for", "words",
]  # fmt: skip
