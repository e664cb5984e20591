"""Prompt -> terminology and colour (data file Resources/terminology.json)."""

import json

from TextSegmentLib.terminology import fallback_color, known_names, load_terminology, match_prompt, terminology_path


def test_data_file_is_consistent():
    data = json.loads(terminology_path().read_text(encoding="utf-8"))
    seen = set()
    for s in data["structures"]:
        assert s["names"] and len(s["color"]) == 3 and all(0 <= c <= 255 for c in s["color"])
        assert s.get("category", "anatomy") in data["categories"]
        if "type" in s:
            scheme, code, meaning = s["type"]
            assert scheme == "SCT" and code.isdigit() and meaning
        for name in s["names"]:
            assert name.lower() not in seen, name
            seen.add(name.lower())
    assert "liver" in known_names()


def test_matches_with_laterality_and_articles():
    liver = match_prompt("Liver")
    assert liver.structure == "liver" and liver.laterality is None
    assert liver.entry.split("~")[2] == "SCT^10200004^Liver"
    assert len(liver.entry.split("~")) == 7
    left = match_prompt("the left kidney")
    right = match_prompt("kidney_right")
    assert left.entry.split("~")[3] == "SCT^7771000^Left"
    assert right.entry.split("~")[3] == "SCT^24028007^Right"
    assert left.color == right.color
    # A named structure that contains a laterality word wins over stripping it.
    assert match_prompt("left ventricle").entry.split("~")[2] == "SCT^87878005^Left ventricle"
    # Laterality on a structure without sides is not a match.
    assert match_prompt("left liver").entry is None
    assert match_prompt("left hippocampus").laterality == "left" and match_prompt("left hippocampus").entry is None


def test_unknown_prompt_gets_stable_colour():
    a, b = match_prompt("the tumour in the right lung"), match_prompt("The tumour in the right lung!")
    assert a.entry is None and a.color == b.color == fallback_color("the tumour in the right lung")
    assert all(0.0 <= c <= 1.0 for c in a.color)
    assert load_terminology() is load_terminology()
