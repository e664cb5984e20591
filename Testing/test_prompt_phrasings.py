"""More than 60 phrasings of sided, unsided and bilateral requests (``Testing/data/side_phrasings.tsv``), read
against the default model's real vocabulary: each is read as expected, and none gives the opposite side without a
warning naming the word it could not read."""

import json
from pathlib import Path

import pytest

from TextSegmentLib.catalog import load_catalog
from TextSegmentLib.prompts import parse_query

DATA = Path(__file__).resolve().parent / "data" / "side_phrasings.tsv"
ROWS = [
    tuple(line.split("\t"))
    for line in DATA.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]


@pytest.fixture(scope="module")
def vocabulary():
    catalog = load_catalog()
    card = Path(catalog.get(catalog.default_id()).embedded_path) / "model.json"
    return json.loads(card.read_text(encoding="utf-8"))["vocabulary"]


def test_the_list_is_long_enough():
    assert len(ROWS) >= 60 and all(expected in ("left", "right", "both", "warn") for _, expected in ROWS)


@pytest.mark.parametrize("prompt, expected", ROWS, ids=[r[0] for r in ROWS])
def test_phrasing_is_read_as_expected(vocabulary, prompt, expected):
    q = parse_query(prompt, vocabulary)
    opposite = {"left": "right", "right": "left"}
    # what the model will segment: the structure itself (sided) or its parts (both sides)
    segmented = [q.term] if q.kind == "structure" else list(q.parts)
    assert segmented and all(segmented), q
    if expected in ("left", "right"):
        assert q.kind == "structure" and q.side == expected and q.term.startswith(expected + " "), q
        assert q.side_read, "how the side was read is reported"
    elif expected == "both":
        assert q.kind == "both_sides" and q.side == "both", q
        assert sorted(p.split(" ", 1)[0] for p in q.parts) == ["left", "right"], q
        assert q.parts[0].split(" ", 1)[1] == q.parts[1].split(" ", 1)[1]  # the same structure on both sides
    else:  # an unreadable side word: a warning naming it, and no side chosen for the user
        assert q.side in (None, "both") and any(w in " ".join(q.warnings) for w in prompt.split()[:1]), q
    # the invariant: never the opposite side without a warning
    for side in ("left", "right"):
        if expected == side:
            assert not any(name.startswith(opposite[side] + " ") for name in segmented), q
