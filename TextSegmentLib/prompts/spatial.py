"""Spatial requests: the two kinds TextSegment answers over the segments it finds, and the rest it refuses clearly.

- "the largest/smallest of <group or paired structure or list>": every part is segmented, the largest (smallest)
  found one is kept;
- "the <paired structure> on the left/right": both sides are segmented, the found one lying furthest to the
  patient's left (right) is kept.

Any other relation ("above", "next to", "the largest structure"...) is refused: :data:`UNSUPPORTED_REASON`.

Example:
    >>> read_spatial("the largest of the basal ganglia"), read_spatial("the smaller hippocampus")
    (('largest', 'basal ganglia'), ('smallest', 'hippocampus'))
    >>> read_spatial("the hippocampus on the left"), read_spatial("the structure above the left thalamus")[0]
    (('left', 'the hippocampus'), 'unsupported')
"""

import re
from typing import Optional, Tuple

from .sides import SIDE_TABLE
from .text import all_words, fold

UNSUPPORTED_REASON = (
    "spatial requests are not supported except 'the largest/smallest of <group>' and '<structure> on the "
    "left/right'; name the structure itself"
)
SUPERLATIVES = {
    "largest": "largest", "biggest": "largest", "larger": "largest", "bigger": "largest",
    "smallest": "smallest", "smaller": "smallest", "tiniest": "smallest",
}  # fmt: skip
#: relations TextSegment does not answer (word sequences, filler words kept)
RELATIONS = [
    ("above",), ("below",), ("beneath",), ("underneath",), ("under",), ("behind",), ("between",), ("beside",),
    ("near",), ("nearest",), ("closest",), ("adjacent",), ("surrounding",), ("around",), ("next", "to"),
    ("superior", "to"), ("inferior", "to"), ("anterior", "to"), ("posterior", "to"), ("lateral", "to"),
    ("medial", "to"), ("in", "front", "of"), ("left", "of"), ("right", "of"), ("touching",), ("lateral", "of"),
    ("medial", "of"),
]  # fmt: skip
_SUPERLATIVE = re.compile(
    r"\b(?:largest|biggest|larger|bigger|smallest|smaller|tiniest)\b(?:\s+(?:one|structures?|parts?|the|two))*"
    r"(?:\s+(?:of|among|amongst|between))?(?:\s+the)?\b(?P<target>.*)$"
)
_ON_SIDE = re.compile(
    r"^(?P<target>.+?)\s*,?\s+on\s+(?:the\s+)?(?:patient'?s\s+)?(?P<side>\S+?)(?:\s+side)?\s*\.?$", re.I
)


#: a relation to one of these is part of describing the target ("the fluid around it"), not another structure
PRONOUNS = {"it", "its", "itself", "them", "they", "this", "that", "these", "those", "there", "here"}
#: a relation after one of these (within 3 words) describes what to leave out ("excluding the fluid around ...")
EXCLUDING = {"excluding", "exclude", "except", "without", "not", "no"}


def _relation_at(tokens, relation) -> bool:
    """Whether ``relation`` occurs in ``tokens`` as a relation to another structure: not to a pronoun ("around it"),
    not in a clause that leaves something out ("excluding the fluid around the putamen")."""
    n = len(relation)
    for i in range(len(tokens) - n + 1):
        if tuple(tokens[i : i + n]) != relation:
            continue
        after = [w for w in tokens[i + n : i + n + 2] if w not in ("the", "a", "an")]
        if after and after[0] in PRONOUNS:
            continue
        if any(w in EXCLUDING for w in tokens[max(0, i - 4) : i]):
            continue
        return True
    return False


def read_spatial(prompt: str) -> Optional[Tuple[str, str]]:
    """(relation, target text) of a spatial request: relation 'largest', 'smallest', 'left' or 'right', or
    ('unsupported', the relation's words); None for a request that is not spatial."""
    tokens = all_words(prompt)
    for w in tokens:
        if w in SUPERLATIVES:
            m = _SUPERLATIVE.search(fold(prompt))
            after = m.group("target").strip(" .?!") if m else ""
            return (SUPERLATIVES[w], after) if all_words(after) else ("unsupported", w)
    for relation in RELATIONS:
        if _relation_at(tokens, relation):
            return "unsupported", " ".join(relation)
    m = _ON_SIDE.match(prompt.strip())
    if m:
        side = SIDE_TABLE.get(all_words(m.group("side"))[0] if all_words(m.group("side")) else "", (None, ""))[0]
        if side in ("left", "right"):
            return side, m.group("target")
    return None
