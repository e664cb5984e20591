"""One prompt module: words and side words, the model card's vocabulary and CT windows, Slicer terminology, tags."""

import json

import pytest

from TextSegmentLib.prompts import (
    card_windows,
    clean_prompt,
    fallback_color,
    known_names,
    load_terminology,
    match_prompt,
    safe_text,
    segment_tags,
    split_side,
    terminology_path,
    words,
)


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


def test_terminology_with_sides_and_articles():
    liver = match_prompt("Liver")
    assert liver.structure == "liver" and liver.side is None
    assert liver.entry.split("~")[2] == "SCT^10200004^Liver"
    assert len(liver.entry.split("~")) == 7
    left = match_prompt("the left kidney")
    right = match_prompt("kidney_right")
    assert left.entry.split("~")[3] == "SCT^7771000^Left"
    assert right.entry.split("~")[3] == "SCT^24028007^Right"
    assert left.color == right.color
    # A named structure that contains a side word wins over taking the side off.
    assert match_prompt("left ventricle").entry.split("~")[2] == "SCT^87878005^Left ventricle"
    # A side on a structure without sides is not a terminology match.
    assert match_prompt("left liver").entry is None
    assert match_prompt("left hippocampus").side == "left"
    assert match_prompt("left hippocampus").entry.split("~")[3] == "SCT^7771000^Left"


def test_unknown_prompt_gets_stable_colour():
    a, b = match_prompt("the tumour in the right lung"), match_prompt("The tumour in the right lung!")
    assert a.color == b.color
    c, d = match_prompt("odd thing"), match_prompt("The odd thing!")
    assert c.entry is None and c.color == d.color == fallback_color("odd thing")
    assert all(0.0 <= v <= 1.0 for v in c.color)
    assert load_terminology() is load_terminology()


def test_vocabulary_matching():
    voc = [{"name": "kidney", "synonyms": ["renal"], "lateral": True}, "liver", {"name": "lung", "region": "lung"}]
    m = match_prompt("R renal", voc)
    assert (m.name, m.side, m.window) == ("kidney", "right", "soft_tissue")
    assert match_prompt("both lungs please", voc).side == "both"
    assert match_prompt("the lung", voc).window == "lung"
    assert match_prompt("tumour", voc).name is None
    assert match_prompt("fractured femur", []).window == "bone"
    assert match_prompt("hippocampus", []).window == "brain"


@pytest.mark.parametrize(
    "prompt, side",
    [("left kidney", "left"), ("L kidney", "left"), ("kidney lt", "left"), ("Kidney, sinister", "left"),
     ("right kidney", "right"), ("kidney R", "right"), ("rt kidney", "right"), ("dexter kidney", "right"),
     ("both kidneys", "both"), ("bilateral kidneys", "both"), ("kidney", None)],
)  # fmt: skip
def test_one_set_of_side_words_for_vocabulary_and_terminology(prompt, side):
    m = match_prompt(prompt, [{"name": "kidney", "lateral": True}])
    assert m.side == side and (m.name == "kidney" or "kidneys" in prompt)
    if side in ("left", "right"):  # the terminology reads the same side
        assert m.entry.split("~")[3].lower().endswith(side)
    assert split_side(words(prompt))[0] == side


def test_control_characters_are_refused_or_stripped():
    assert clean_prompt("  left\n\tkidney ") == "left kidney"
    for bad in ("liver\x1b[31m", "liver\x00", "li\u202ever"):
        with pytest.raises(ValueError, match="control character"):
            clean_prompt(bad)
    with pytest.raises(ValueError, match="empty"):
        clean_prompt(" \n ")
    with pytest.raises(ValueError, match="not text"):
        clean_prompt(42)
    assert safe_text("a\nb\x00c|d") == "a b c|d"
    tags = segment_tags("liver\nSegment0_Name:=evil", True, 0.5, 1.0)
    assert tags["TextSegment.Prompt"] == "liver Segment0_Name:=evil" and tags["TextSegment.Found"] == "true"


def test_card_windows_override_the_built_in_table():
    windows = card_windows({"input": {"ct_windows": {"brain": [35, 90], "liver": [60, 160], "bad": [0, 0]}}})
    assert windows["brain"] == (35.0, 90.0) and windows["liver"] == (60.0, 160.0) and "bad" not in windows
    assert windows["lung"] == (-600.0, 1500.0)
    assert card_windows(None)["soft_tissue"] == (40.0, 400.0)
    # a card window name used by a vocabulary entry is honoured
    voc = [{"name": "liver", "ct_window": "liver"}]
    assert match_prompt("liver", voc, windows=windows).window == "liver"
    assert match_prompt("liver", voc).window == "soft_tissue"
