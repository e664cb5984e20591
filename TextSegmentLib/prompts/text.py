"""Prompt text: control characters refused, white space collapsed, accents folded, words without filler words.

Example:
    >>> words("  The Hippocampe GAUCHE, please ")
    ['hippocampe', 'gauche']
"""

import re
import unicodedata
from typing import Any, List

#: filler words that never change what a prompt names
STOP_WORDS = {
    "the", "a", "an", "of", "in", "on", "segment", "please", "all", "my", "this", "entire", "whole", "sided", "side",
    "sides", "show", "me", "find", "outline", "delineate", "and", "der", "die", "das", "le", "la", "les", "el", "los",
    "las", "du", "de", "des", "del",
}  # fmt: skip


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


def fold(text: str) -> str:
    """Lower case without accents ("Rechts", "côté" -> "rechts", "cote"); ``ß`` becomes ``ss``.

    Example:
        >>> fold("Bilatéral Ganglions")
        'bilateral ganglions'
    """
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ß", "ss"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def all_words(text: str) -> List[str]:
    """Lower-case, accent-free words without punctuation (filler words kept)."""
    return re.findall(r"[a-z0-9]+", fold(text).replace("_", " "))


def words(text: str) -> List[str]:
    """Lower-case, accent-free words without punctuation or filler words."""
    return [w for w in all_words(text) if w not in STOP_WORDS]


def normalize(text: str) -> str:
    """The words of ``text`` as one string (the key used for every match).

    Example:
        >>> normalize("  The Left_Kidney. ")
        'left kidney'
    """
    return " ".join(words(text))
