"""Groups people name: a name for several structures of the vocabulary, segmented as the union of its parts.

A part is a structure base ("putamen"): a paired one gives its left and right entries (only one side when the prompt
names a side), an unsided one its entry. "hemisphere" is every paired structure of the cerebrum on that side.

Example:
    >>> group_in(["left", "basal", "ganglia"])
    ('basal ganglia', 2)
"""

from typing import Dict, List, Optional, Sequence, Tuple

#: sentinel part list of a cerebral hemisphere (every paired cerebral structure of the vocabulary)
HEMISPHERE = ("<hemisphere>",)
_BASAL = ("caudate nucleus", "putamen", "globus pallidus")
_DEEP = ("caudate nucleus", "putamen", "globus pallidus", "thalamus")
#: group phrase (words as :func:`VocabularyIndex.singular` gives them) -> (group name, part bases)
GROUPS: Dict[Tuple[str, ...], Tuple[str, Tuple[str, ...]]] = {
    ("basal", "ganglia"): ("basal ganglia", _BASAL),
    ("basal", "ganglion"): ("basal ganglia", _BASAL),
    ("basal", "nucleus"): ("basal ganglia", _BASAL),
    ("striatum",): ("striatum", ("caudate nucleus", "putamen")),
    ("corpus", "striatum"): ("striatum", ("caudate nucleus", "putamen")),
    ("dorsal", "striatum"): ("striatum", ("caudate nucleus", "putamen")),
    ("lentiform", "nucleus"): ("lentiform nucleus", ("putamen", "globus pallidus")),
    ("lenticular", "nucleus"): ("lentiform nucleus", ("putamen", "globus pallidus")),
    ("deep", "grey", "matter"): ("deep grey matter", _DEEP),
    ("deep", "gray", "matter"): ("deep grey matter", _DEEP),
    ("deep", "grey", "nucleus"): ("deep grey matter", _DEEP),
    ("deep", "gray", "nucleus"): ("deep grey matter", _DEEP),
    ("subcortical", "grey", "matter"): ("deep grey matter", _DEEP),
    ("subcortical", "gray", "matter"): ("deep grey matter", _DEEP),
    ("hemisphere",): ("cerebral hemisphere", HEMISPHERE),
    ("cerebral", "hemisphere"): ("cerebral hemisphere", HEMISPHERE),
    ("hemispheres",): ("cerebral hemisphere", HEMISPHERE),
    ("cerebral", "hemispheres"): ("cerebral hemisphere", HEMISPHERE),
}
#: structures that are not part of a cerebral hemisphere (cerebellum, brainstem)
NOT_CEREBRAL = ("cerebell", "vermis", "peduncle", "lemniscus", "pontine", "crus", "lobule")


def group_in(found: Sequence[str]) -> Optional[Tuple[str, int]]:
    """(group name, phrase length) of the longest group phrase occurring in ``found``, or None."""
    text = f" {' '.join(found)} "
    best: Optional[Tuple[str, int]] = None
    for phrase, (name, _) in GROUPS.items():
        if f" {' '.join(phrase)} " in text and (best is None or len(phrase) > best[1]):
            best = (name, len(phrase))
    return best


def group_bases(name: str) -> Tuple[str, ...]:
    """The part bases of a group name."""
    return next(parts for (gname, parts) in GROUPS.values() if gname == name)


def hemisphere_bases(pairs: Dict[str, Dict[str, str]]) -> List[str]:
    """Every paired base of the cerebrum (not of the cerebellum or brainstem)."""
    return sorted(b for b in pairs if not any(k in b for k in NOT_CEREBRAL))
