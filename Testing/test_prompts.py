"""The prompts package: words and side words, the model card's vocabulary and CT windows, Slicer terminology, tags,
and one typed query per prompt (sides in any language or spelling, both sides, groups, findings, spatial requests)."""

import json

import pytest

from TextSegmentLib.prompts import (
    card_windows,
    clean_prompt,
    fallback_color,
    known_names,
    load_terminology,
    match_prompt,
    parse_query,
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


# --- one typed query per prompt (the default model's real vocabulary) -------------------------------------------
@pytest.fixture(scope="module")
def brain_vocabulary():
    from pathlib import Path

    from TextSegmentLib.catalog import load_catalog

    catalog = load_catalog()
    card = Path(catalog.get(catalog.default_id()).embedded_path) / "model.json"
    return json.loads(card.read_text(encoding="utf-8"))["vocabulary"]


@pytest.mark.parametrize(
    "prompt, term, how",
    [("rigth caudate", "right caudate nucleus", "'rigth' read as right (close spelling)"),
     ("Putamen rechts", "right putamen", "'rechts' read as right (German)"),
     ("putamen dextrum", "right putamen", "'dextrum' read as right (Latin)"),
     ("hippocampe gauche", "left hippocampus", "'gauche' read as left (French)"),
     ("putamen sinistrum", "left putamen", "'sinistrum' read as left (Latin)"),
     ("lfet putamen", "left putamen", "'lfet' read as left (close spelling)"),
     ("hipocampo derecho", "right hippocampus", "'derecho' read as right (Spanish)"),
     ("rt. caudate", "right caudate nucleus", "'rt' read as right (abbreviation)")],
)  # fmt: skip
def test_sides_in_any_language_and_spelling(brain_vocabulary, prompt, term, how):
    q = parse_query(prompt, brain_vocabulary)
    assert (q.kind, q.term, q.side_read, q.warnings) == ("structure", term, how, ())
    assert q.text == term and term.split()[0] in q.entry.split("~")[3].lower()  # the terminology has the side too


def test_a_side_like_word_that_cannot_be_read_is_a_warning(brain_vocabulary):
    q = parse_query("reft putamen", brain_vocabulary)
    assert q.kind == "both_sides" and "'reft' looks like a side word" in q.warnings[0]
    for prompt in ("light putamen", "the eight putamen slices"):  # English words are not misspelt sides
        assert not parse_query(prompt, brain_vocabulary).warnings


@pytest.mark.parametrize(
    "prompt, base",
    [("putamen", "putamen"), ("caudate", "caudate nucleus"), ("hippocampus", "hippocampus"),
     ("bilateral putamen", "putamen"), ("both hippocampi", "hippocampus"), ("hippocampi", "hippocampus"),
     ("thalami", "thalamus"), ("caudate nuclei", "caudate nucleus")],
)  # fmt: skip
def test_a_paired_structure_without_a_side_means_both(brain_vocabulary, prompt, base):
    q = parse_query(prompt, brain_vocabulary)
    assert (q.kind, q.term, q.side, q.parts) == ("both_sides", base, "both", (f"left {base}", f"right {base}"))
    assert q.entry is None or q.entry.split("~")[3] == "^^"  # labelled without laterality
    assert "both sides" in q.reading


def test_an_unsided_structure_of_the_vocabulary_is_itself_not_both_sides_of_another(brain_vocabulary):
    """ "cerebellum" is an entry of its own (hemispheres and vermis); its hemispheres have the synonyms "left/right
    cerebellum", which must not turn the whole cerebellum into the two hemispheres without the vermis."""
    for prompt in ("cerebellum", "the cerebellum please"):
        q = parse_query(prompt, brain_vocabulary)
        assert (q.kind, q.term, q.parts) == ("structure", "cerebellum", ())
    assert parse_query("left cerebellum", brain_vocabulary).term == "left cerebellar hemisphere"


def test_groups_are_the_union_of_their_parts(brain_vocabulary):
    q = parse_query("basal ganglia", brain_vocabulary)
    assert q.kind == "group" and len(q.parts) == 6 and "left globus pallidus" in q.parts
    assert parse_query("striatum", brain_vocabulary).parts == (
        "left caudate nucleus", "right caudate nucleus", "left putamen", "right putamen",
    )  # fmt: skip
    deep = parse_query("deep grey matter", brain_vocabulary)
    assert {"left thalamus", "right thalamus"} <= set(deep.parts)
    left = parse_query("left basal ganglia", brain_vocabulary)
    assert len(left.parts) == 3 and all(p.startswith("left ") for p in left.parts)
    hemisphere = parse_query("left hemisphere", brain_vocabulary)
    assert hemisphere.kind == "group" and len(hemisphere.parts) > 50
    assert all(p.startswith("left ") and "cerebell" not in p for p in hemisphere.parts)
    # the cerebellar hemisphere is a structure of its own, not a group
    assert parse_query("left cerebellar hemisphere", brain_vocabulary).term == "left cerebellar hemisphere"


@pytest.mark.parametrize(
    "prompt, finding",
    [("tumour", "tumour"), ("brain tumor in the left frontal lobe", "tumor"),
     ("glioma of the right thalamus", "glioma"), ("metastasis", "metastasis"),
     ("haematoma next to the putamen", "haematoma"), ("hematoma", "hematoma"),
     ("left caudate infarct", "infarct"), ("lesion in the hippocampus", "lesion"), ("cyst", "cyst"),
     ("haemorrhage in the left putamen", "haemorrhage"), ("hemorrhage", "hemorrhage"), ("skull fracture", "fracture")],
)  # fmt: skip
def test_findings_are_refused_even_with_anatomy(brain_vocabulary, prompt, finding):
    q = parse_query(prompt, brain_vocabulary)
    assert q.kind == "finding" and q.reason == f"this model segments anatomy, not {finding}" and not q.parts


def test_spatial_requests_one_kind_or_a_clear_refusal(brain_vocabulary):
    q = parse_query("the largest of the basal ganglia", brain_vocabulary)
    assert (q.kind, q.relation, len(q.parts)) == ("spatial", "largest", 6)
    q = parse_query("the smallest of the caudate, putamen and thalamus", brain_vocabulary)
    assert (q.kind, q.relation, len(q.parts)) == ("spatial", "smallest", 6)
    q = parse_query("the hippocampus on the left", brain_vocabulary)
    assert (q.kind, q.relation, q.parts) == ("spatial", "left", ("left hippocampus", "right hippocampus"))
    q = parse_query("the basal ganglia on the right", brain_vocabulary)  # a group on a side: that side's parts
    assert q.kind == "group" and len(q.parts) == 3 and all(p.startswith("right ") for p in q.parts)
    for prompt in ("the structure above the left thalamus", "the largest structure", "what is next to the putamen"):
        q = parse_query(prompt, brain_vocabulary)
        assert q.kind == "unsupported" and "spatial requests are not supported" in q.reason, prompt


def test_the_reading_is_told_in_words(brain_vocabulary):
    assert parse_query("rigth caudate", brain_vocabulary).reading == (
        "right caudate nucleus; side right ('rigth' read as right (close spelling))"
    )
    assert parse_query("putamen", brain_vocabulary).reading == (
        "putamen, both sides (left putamen + right putamen); side both (no side named: a paired structure means "
        "both sides)"
    )
    assert parse_query("tumour", brain_vocabulary).reading == "not segmented: this model segments anatomy, not tumour"


def test_a_finding_in_the_purpose_of_a_request_is_not_its_target(brain_vocabulary):
    for prompt in ("outline the whole brain for the tumour follow-up study", "putamen for the stroke research trial"):
        q = parse_query(prompt, brain_vocabulary)
        assert q.kind in ("structure", "both_sides") and q.reason is None, prompt
    assert parse_query("hippocampal atrophy", brain_vocabulary).reason is None  # a property, not an object


@pytest.mark.parametrize(
    "prompt, term",
    [
        ("an adult head scan without any haemorrhage or mass; outline the right caudate nucleus on every slice, "
         "leaving out the ventricle next to it", "right caudate nucleus"),
        ("no visible tumour here, just the left hippocampus please", "left hippocampus"),
        ("segment the left thalamus, excluding the CSF around the thalamus", "left thalamus"),
    ],
)  # fmt: skip
def test_long_requests_that_deny_a_finding_or_describe_their_target_are_read(brain_vocabulary, prompt, term):
    """A finding the request denies ("without any haemorrhage") is not its target, and a relation to the target
    itself ("the fluid around it") or in a clause that leaves something out is no spatial request."""
    q = parse_query(prompt, brain_vocabulary)
    assert (q.kind, q.term) == ("structure", term), q.reason
    assert parse_query("the haemorrhage next to the left thalamus", brain_vocabulary).kind == "finding"
    assert parse_query("the structure next to the left thalamus", brain_vocabulary).kind == "unsupported"
