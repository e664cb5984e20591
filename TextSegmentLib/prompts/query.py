"""One typed query per prompt: what the text means, parsed once and carried to the engine, writers and Slicer.

Kinds:

- ``structure``: one vocabulary structure (``term``; on ``side`` when the structure is paired);
- ``both_sides``: a paired structure named without a side, "bilateral", "both" or in the plural: its left and right
  entries (``parts``) segmented and united into one segment labelled without laterality;
- ``group``: a group people name ("basal ganglia", "striatum", "deep grey matter", "left hemisphere"): the union of
  its ``parts``;
- ``spatial``: "the largest/smallest of <parts>", "<paired structure> on the left/right": ``relation`` chooses one of
  the found ``parts``;
- ``finding``: a finding an anatomy model was not trained on (tumour, lesion...); nothing is segmented (``reason``);
- ``unsupported``: a spatial relation TextSegment does not answer; nothing is segmented (``reason``).

Example:
    >>> voc = ["left putamen", "right putamen", "left caudate nucleus", "right caudate nucleus", "brain"]
    >>> q = parse_query("rigth caudate", voc)
    >>> q.kind, q.term, q.side, q.side_read
    ('structure', 'right caudate nucleus', 'right', "'rigth' read as right (close spelling)")
    >>> q = parse_query("putamen", voc)
    >>> q.kind, q.parts, q.side
    ('both_sides', ('left putamen', 'right putamen'), 'both')
    >>> parse_query("brain tumor in the left frontal lobe", voc).reason
    'this model segments anatomy, not tumor'
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .findings import finding_in
from .groups import HEMISPHERE, group_bases, group_in, hemisphere_bases
from .sides import read_side
from .spatial import UNSUPPORTED_REASON, read_spatial
from .terminology import Color, fallback_color, terminology_for
from .text import clean_prompt, words
from .vocabulary import Phrase, VocabularyIndex, index_of
from .windows import window_for

KINDS = ("structure", "both_sides", "group", "spatial", "finding", "unsupported")
#: how a side is read when none is given for a paired structure
BOTH_BY_DEFAULT = "no side named: a paired structure means both sides"


@dataclass(frozen=True)
class Query:
    """What one prompt means (see the module's kinds). ``term``: the vocabulary name the model reads (structure),
    the paired structure (both sides, spatial) or the group's name; None when the vocabulary does not name it.
    ``side``: 'left', 'right', 'both' or None; ``side_read``: how it was read ('' without a side word);
    ``parts``: the vocabulary names segmented and united (or chosen from); ``window``: CT window name; ``color``
    (RGB 0..1), ``entry`` (Slicer terminology) and ``structure`` (terminology name); ``score``: 1 a vocabulary name
    or synonym occurs in the prompt, < 1 a close spelling or word overlap, 0 none; ``warnings``: what the user should
    know (a side word that could not be read...); ``reason``: why nothing is segmented (findings, refusals);
    ``content``: the prompt's words without side and filler words (what a vocabulary gate compares)."""

    prompt: str
    kind: str = "structure"
    term: Optional[str] = None
    side: Optional[str] = None
    side_read: str = ""
    parts: Tuple[str, ...] = ()
    relation: Optional[str] = None
    window: str = "soft_tissue"
    color: Color = (0.5, 0.5, 0.5)
    entry: Optional[str] = None
    structure: Optional[str] = None
    score: float = 0.0
    warnings: Tuple[str, ...] = ()
    reason: Optional[str] = None
    content: Tuple[str, ...] = ()

    @property
    def name(self) -> Optional[str]:
        """The vocabulary term (the name ``PromptMatch`` used)."""
        return self.term

    @property
    def text(self) -> str:
        """What the model reads for a ``structure`` query: its vocabulary name, else the prompt as typed."""
        return self.term if (self.kind == "structure" and self.term) else self.prompt

    @property
    def reading(self) -> str:
        """How the prompt was read, in words (the CLI table, the JSON report, the Slicer tooltip)."""
        if self.reason:
            return f"not segmented: {self.reason}"
        if self.kind == "structure":
            what = self.term or "not in the vocabulary (the model reads the prompt as typed)"
        elif self.kind == "both_sides":
            what = f"{self.term}, both sides ({' + '.join(self.parts)})"
        elif self.kind == "group":
            what = f"{self.term}: {' + '.join(self.parts)}"
        else:
            how = {"largest": "the largest of", "smallest": "the smallest of"}.get(self.relation or "", "")
            how = how or f"the one lying on the patient's {self.relation} of"
            what = f"{how} {', '.join(self.parts)}"
        side = f"; side {self.side}" + (f" ({self.side_read})" if self.side_read else "") if self.side else ""
        return what + side


def _group_parts(index: VocabularyIndex, name: str, side: Optional[str]) -> List[str]:
    bases = group_bases(name)
    if bases == HEMISPHERE:
        bases = tuple(hemisphere_bases(index.pairs))
    sides = ("left", "right") if side not in ("left", "right") else (side,)
    out: List[str] = []
    for base in bases:
        if base in index.pairs:
            out += [index.pairs[base][s] for s in sides]
        elif base in index.by_name and side not in ("left", "right"):
            out.append(base)
    return out


def _target_parts(index: VocabularyIndex, text: str) -> Tuple[Optional[str], List[str]]:
    """(name, parts) of a spatial target: a group, a paired structure (both sides) or a list of them."""
    reading = read_side(words(text), index.known)
    group = group_in(index.singular(reading.rest))
    if group:
        return group[0], _group_parts(index, group[0], reading.side)
    parts: List[str] = []
    names: List[str] = []
    for chunk in re.split(r",|;|\band\b|\bor\b|\bvs\b", text):
        r = read_side(words(chunk), index.known)
        phrase = index.find(r.rest, r.side) if r.rest else None
        if phrase is None:
            continue
        base = index.base(phrase)
        if base and r.side in ("left", "right"):
            parts.append(index.pairs[base][r.side])
        elif base:
            parts += [index.pairs[base]["left"], index.pairs[base]["right"]]
        else:
            parts.append(phrase.name)
        names.append(base or phrase.name)
    return (", ".join(dict.fromkeys(names)) or None), list(dict.fromkeys(parts))


def _decorate(q: Query, index: VocabularyIndex, windows: Iterable[str], terminology: Optional[Dict]) -> Query:
    """Window, colour and terminology of a query (from its term, else from the prompt's own words)."""
    side = q.side if q.side in ("left", "right") else None
    first = q.parts[0] if q.parts else q.term
    entry = index.by_name.get(first or "")
    if q.term and q.kind != "group":
        rest = read_side(words(q.term), index.known).rest
        found = ([side] if side else []) + rest
    else:
        reading = read_side(words(q.prompt), index.known)
        rest = reading.rest
        found = words(q.prompt) if q.kind == "structure" else rest
    window = window_for(rest + words(first or ""), entry, windows)
    term_entry, structure, color = terminology_for(found, side, rest, terminology)
    if color is None:
        term_entry, structure, color = None, None, fallback_color(q.term if q.kind == "group" else q.prompt)
    return Query(**{**q.__dict__, "window": window, "color": color, "entry": term_entry, "structure": structure})


def parse_query(
    prompt: str, vocabulary: Iterable[Any] = (), windows: Iterable[str] = (), terminology: Optional[Dict] = None
) -> Query:
    """Read a prompt once, against a model card's vocabulary (``windows``: the card's own CT window names;
    ``terminology``: the Slicer terminology data, default the packaged file). ValueError for an unusable prompt."""
    prompt = clean_prompt(prompt)
    index = index_of(vocabulary)
    found = words(prompt)
    reading = read_side(found, index.known)
    warnings = [f"'{w}' looks like a side word but could not be read; type left or right" for w in reading.unreadable]
    base_q = dict(
        prompt=prompt, side=reading.side, side_read=reading.how, warnings=tuple(warnings), content=tuple(reading.rest)
    )
    finding = finding_in(found, index.known)
    if finding:
        q = Query(kind="finding", reason=f"this model segments anatomy, not {finding}", **base_q)
        return _decorate(q, index, windows, terminology)
    spatial = read_spatial(prompt)
    if spatial and spatial[0] == "unsupported":
        q = Query(kind="unsupported", reason=f"'{spatial[1]}': {UNSUPPORTED_REASON}", **base_q)
        return _decorate(q, index, windows, terminology)
    if spatial and spatial[0] in ("left", "right"):
        group = group_in(index.singular(read_side(words(spatial[1]), index.known).rest))
        parts = _group_parts(index, group[0], spatial[0]) if group else []
        if parts:  # "the basal ganglia on the left": that side's parts, not one of them
            how = f"'on the {spatial[0]}'"
            q = Query(**dict(base_q, kind="group", term=group[0], parts=tuple(parts), side=spatial[0],
                             side_read=how, score=1.0))  # fmt: skip
            return _decorate(q, index, windows, terminology)
    if spatial:
        name, parts = _target_parts(index, spatial[1])
        if len(parts) > 1 or spatial[0] in ("largest", "smallest"):
            if not parts:
                reason = f"'{spatial[1]}' names no structure of this model's vocabulary to choose from"
                q = Query(kind="unsupported", reason=reason, **base_q)
            else:
                side = spatial[0] if spatial[0] in ("left", "right") else None
                how = f"chosen by position among the found {name}" if side else ""
                q = Query(**dict(base_q, kind="spatial", term=name, parts=tuple(parts), relation=spatial[0],
                                 side=side, side_read=how, score=1.0))  # fmt: skip
            return _decorate(q, index, windows, terminology)
    return _decorate(_read_structure(index, reading, base_q), index, windows, terminology)


def _read_structure(index: VocabularyIndex, reading: Any, base_q: Dict[str, Any]) -> Query:
    """A structure, both sides or group query from the side-free words."""
    side, rest = reading.side, reading.rest
    warnings = list(base_q["warnings"])
    phrase: Optional[Phrase] = index.find(rest, side)
    score = 1.0 if phrase else 0.0
    group = group_in(index.singular(rest))
    if group and (phrase is None or group[1] >= len(phrase.words)):
        parts = _group_parts(index, group[0], side)
        if parts:
            how = base_q["side_read"] or ("" if side else BOTH_BY_DEFAULT)
            return Query(**dict(base_q, kind="group", term=group[0], parts=tuple(parts), side=side or "both",
                                side_read=how, score=1.0))  # fmt: skip
    if phrase is None:
        phrase = index.closest(rest, side)
        if phrase is not None:
            score = 0.9 if not side or phrase.side in (None, side) else 0.5
    if phrase is None:
        return Query(**dict(base_q, warnings=tuple(warnings)))
    base = index.base(phrase)
    if base is not None:
        if side in ("left", "right"):
            return Query(**dict(base_q, term=index.pairs[base][side], score=score))
        plural = index.plural(rest)
        how = base_q["side_read"] or (f"plural '{plural}': both sides" if plural else BOTH_BY_DEFAULT)
        if reading.unreadable:
            warnings.append(f"no side could be read, so both sides of the {base} were segmented")
        parts = (index.pairs[base]["left"], index.pairs[base]["right"])
        return Query(**dict(base_q, kind="both_sides", term=base, side="both", side_read=how, parts=parts,
                            score=score, warnings=tuple(warnings)))  # fmt: skip
    entry = index.by_name.get(phrase.name, {})
    if side in ("left", "right") and phrase.side not in (None, side):
        warnings.append(f"this model knows the {phrase.name} but not the {side} one; the prompt is read as typed")
        return Query(**dict(base_q, score=0.0, warnings=tuple(warnings)))
    if side in ("left", "right") and phrase.side is None and entry.get("laterality") == "bilateral":
        warnings.append(f"'{phrase.name}' has no sides in this model; the side word was not used")
    return Query(**dict(base_q, term=phrase.name, score=score, warnings=tuple(warnings)))


def parse_queries(prompts: Sequence[Any], vocabulary: Iterable[Any] = (), windows: Iterable[str] = ()) -> List[Query]:
    """:func:`parse_query` of every prompt (a :class:`Query` passes through unchanged)."""
    vocabulary = list(vocabulary or ())
    return [p if isinstance(p, Query) else parse_query(p, vocabulary, windows) for p in prompts]
