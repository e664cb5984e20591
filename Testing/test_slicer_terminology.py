"""Prompt -> terminology and colour (data file Resources/terminology.json)."""

import json
from pathlib import Path

import pytest

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
    assert match_prompt("left hippocampus").laterality == "left"
    assert match_prompt("left hippocampus").entry.split("~")[3] == "SCT^7771000^Left"


def test_unknown_prompt_gets_stable_colour():
    a, b = match_prompt("the tumour in the right lung"), match_prompt("The tumour in the right lung!")
    assert a.entry is None and a.color == b.color == fallback_color("the tumour in the right lung")
    assert all(0.0 <= c <= 1.0 for c in a.color)
    assert load_terminology() is load_terminology()


SLICER_LIST = Path(__file__).parent / "data" / "slicer_terminology"


def test_every_entry_is_in_slicers_dicom_master_list():
    """Each category/type/modifier the extension writes exists in the list its entries name (Slicer's own logic)."""
    slicer = pytest.importorskip("slicer")
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    name = logic.LoadTerminologyFromFile(
        str(SLICER_LIST / "SegmentationCategoryTypeModifier-DICOM-Master.subset.term.json")
    )
    data = load_terminology()
    assert name == data["context"] == "Segmentation category and type - DICOM master list"
    prompts = []
    for structure in data["structures"]:
        if "type" in structure:
            base = structure["names"][0]
            prompts += [base] + ([f"left {base}", f"right {base}"] if structure.get("laterality") else [])
    assert len([s for s in data["structures"] if "type" in s]) == 43
    for prompt in prompts:
        entry = slicer.vtkSlicerTerminologyEntry()
        assert logic.DeserializeTerminologyEntry(match_prompt(prompt).entry, entry), prompt
        assert entry.GetTerminologyContextName() == name
        category = entry.GetCategoryObject()
        wanted = entry.GetTypeObject()
        found = None
        for n in range(logic.GetNumberOfTypesInTerminologyCategory(name, category)):
            candidate = slicer.vtkSlicerTerminologyType()
            assert logic.GetNthTypeInTerminologyCategory(name, category, n, candidate)
            if candidate.GetCodeValue() == wanted.GetCodeValue():
                found = candidate
        assert found is not None, f"{prompt}: {wanted.GetCodeValue()} {wanted.GetCodeMeaning()} is not in {name}"
        assert found.GetCodeMeaning() == wanted.GetCodeMeaning(), prompt
        modifier = entry.GetTypeModifierObject().GetCodeValue()
        if modifier:
            modifiers = []
            for n in range(logic.GetNumberOfTypeModifiersInTerminologyType(name, category, found)):
                m = slicer.vtkSlicerTerminologyType()
                assert logic.GetNthTypeModifierInTerminologyType(name, category, found, n, m)
                modifiers.append(m.GetCodeValue())
            assert modifier in modifiers, f"{prompt}: modifier {modifier} is not allowed for {found.GetCodeMeaning()}"


def test_brain_structures_of_the_default_model_are_coded():
    for prompt, code in [("left hippocampus", "5366008"), ("right putamen", "89278009"), ("brain", "12738006"),
                         ("left thalamus", "42695009"), ("inferior vena cava", "64131007")]:  # fmt: skip
        assert f"SCT^{code}^" in match_prompt(prompt).entry.split("~")[2], prompt
