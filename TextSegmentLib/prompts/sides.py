"""Side words: every common spelling, abbreviation, Latin, German, French, Spanish (and close misspellings) of left,
right and both; a word that looks like a side but cannot be read is reported, never guessed.

Example:
    >>> r = read_side(["rigth", "caudate"])
    >>> r.side, r.rest, r.how
    ('right', ['caudate'], "'rigth' read as right (close spelling)")
    >>> read_side(["putamen", "rechts"]).how
    "'rechts' read as right (German)"
"""

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple


def _words(side: str, how: str, items: str) -> Dict[str, Tuple[str, str]]:
    return {w: (side, how) for w in items.split()}


#: side word -> (side, what kind of word it is); whole words, accents folded, any case
SIDE_TABLE: Dict[str, Tuple[str, str]] = {
    **_words("left", "English", "left lefthand"),
    **_words("left", "abbreviation", "l lt lft lhs li"),
    **_words("left", "Latin", "sinister sinistra sinistrum sinistri sinistrae sinistro sinistral sin"),
    **_words("left", "German", "links linke linker linkes linken linksseitig"),
    **_words("left", "French", "gauche gauches"),
    **_words("left", "Spanish", "izquierdo izquierda izquierdos izquierdas izq izda"),
    **_words("left", "Italian", "sinistre sinistri"),
    **_words("left", "Portuguese", "esquerdo esquerda"),
    **_words("right", "English", "right righthand"),
    **_words("right", "abbreviation", "r rt rgt rhs re"),
    **_words("right", "Latin", "dexter dextra dextrum dextri dextrae dextro dextral dext dex"),
    **_words("right", "German", "rechts rechte rechter rechtes rechten rechtsseitig"),
    **_words("right", "French", "droit droite droits droites"),
    **_words("right", "Spanish", "derecho derecha derechos derechas dcho dcha"),
    **_words("right", "Italian", "destro destra destri destre"),
    **_words("right", "Portuguese", "direito direita"),
    **_words("both", "English", "both bilateral bilaterally bilat"),
    **_words("both", "German", "beidseits beidseitig beide beiden"),
    **_words("both", "Spanish", "ambos ambas bilaterales"),
    **_words("both", "French", "bilateraux"),
}
#: compatibility: side word -> side
SIDE_WORDS: Dict[str, str] = {w: side for w, (side, _) in SIDE_TABLE.items()}
#: English words one letter away from "left" or "right" that are not side words
NOT_SIDES = {
    "light", "night", "sight", "tight", "might", "fight", "eight", "bright", "fright", "wright", "lift", "loft",
    "lent", "lest", "deft", "heft", "weft", "let", "lens", "rift", "rigid", "lefts", "rights", "ridge", "rest",
    "feet", "felt", "lead", "list", "lean", "last", "lost", "legs", "leg", "leaf", "life", "lake", "late", "lefty",
    "rich", "rise", "ride", "road", "rate", "root", "rigs", "riot", "rite", "lobe", "lobi", "loop",
    "reset", "rivet", "fifth", "left-", "lump", "lumen", "loss",
}  # fmt: skip


def osa_distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions counted as one edit ("rigth" -> "right": 1).

    Example:
        >>> osa_distance("rigth", "right"), osa_distance("lfet", "left"), osa_distance("light", "right")
        (1, 1, 1)
    """
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@dataclass(frozen=True)
class SideReading:
    """The side of a prompt: ``side`` 'left', 'right', 'both' or None; ``how`` it was read (text, '' when no side
    word); ``rest`` the words left after the side words; ``unreadable`` words that look like a side but could not be
    read (each is a warning)."""

    side: Optional[str]
    how: str
    rest: List[str] = field(default_factory=list)
    unreadable: Tuple[str, ...] = ()


def misspelt_side(word: str, known: Iterable[str] = ()) -> Tuple[Optional[str], bool]:
    """(side, looks like a side) for a word not in :data:`SIDE_TABLE`: a word one edit from "left" or "right" that
    starts like it (or with its first two letters swapped) reads as that side; any other word one edit away, or two
    edits away with the same start and about the same length, looks like a side but cannot be read. Known words
    (vocabulary, :data:`NOT_SIDES`) are never sides.

    Example:
        >>> misspelt_side("lfet"), misspelt_side("rihgt"), misspelt_side("reft"), misspelt_side("light")
        (('left', True), ('right', True), (None, True), (None, False))
    """
    if not word.isalpha() or len(word) < 3 or word in NOT_SIDES or word in set(known):
        return None, False
    close = []
    near = False
    for side in ("left", "right"):
        d = osa_distance(word, side)
        starts = word[0] == side[0] or word[:2] == side[1::-1]
        if d == 1 and starts:
            close.append(side)
        if d <= 1 or (d == 2 and starts and len(word) >= 4 and abs(len(word) - len(side)) <= 1):
            near = True
    if len(close) == 1:
        return close[0], True
    return None, near


def read_side(found: Sequence[str], known: Iterable[str] = ()) -> SideReading:
    """Take the side words off ``found`` (words from :func:`~.text.words`): both a left and a right word, or a word
    meaning both, read as 'both'; ``known`` are words that are never side words (the vocabulary's).

    Example:
        >>> read_side(["putamen", "dextrum"]).side, read_side(["left", "right", "putamen"]).side
        ('right', 'both')
        >>> read_side(["reft", "putamen"]).unreadable
        ('reft',)
    """
    known = set(known)
    sides: List[str] = []
    hows: List[str] = []
    rest: List[str] = []
    unreadable: List[str] = []
    for w in found:
        if w in SIDE_TABLE and w not in known - {"left", "right"}:
            side, kind = SIDE_TABLE[w]
            sides.append(side)
            hows.append(f"'{w}'" if kind == "English" else f"'{w}' read as {side} ({kind})")
            continue
        side, looks = misspelt_side(w, known)
        if side is not None:
            sides.append(side)
            hows.append(f"'{w}' read as {side} (close spelling)")
        elif looks:
            unreadable.append(w)
        else:
            rest.append(w)
    distinct = set(sides)
    if not distinct:
        return SideReading(None, "", rest, tuple(unreadable))
    side = "both" if "both" in distinct or {"left", "right"} <= distinct else sides[0]
    return SideReading(side, ", ".join(dict.fromkeys(hows)), rest, tuple(unreadable))


def split_side(found: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """(side, remaining words) of a word list (see :func:`read_side`; unreadable words are dropped).

    Example:
        >>> split_side(["kidney", "rt"]), split_side(["both", "lungs"])
        (('right', ['kidney']), ('both', ['lungs']))
    """
    reading = read_side(found)
    return reading.side, reading.rest


def side_words() -> Set[str]:
    """Every side word :func:`read_side` knows (not counting misspellings)."""
    return set(SIDE_TABLE)


def mirror_sides(name: str) -> str:
    """A vocabulary name with left and right swapped: what the same structure is called in a left-right mirrored
    image.

    Example:
        >>> mirror_sides("left putamen"), mirror_sides("Right anterior limb of the internal capsule")
        ('right putamen', 'Left anterior limb of the internal capsule')
        >>> mirror_sides("brain"), mirror_sides("leftover")
        ('brain', 'leftover')
    """
    swap = {"left": "right", "right": "left"}
    return re.sub(
        r"\b(left|right)\b",
        lambda m: swap[m.group(1).lower()].capitalize() if m.group(1)[0].isupper() else swap[m.group(1).lower()],
        name,
        flags=re.IGNORECASE,
    )
