"""Every terminology entry the extension writes is an entry of Slicer's own list, checked with Slicer's logic.

The entries name Slicer's "DICOM master list" (loaded by Slicer's Terminologies module by default); a subset of it is
in Testing/data/slicer_terminology (see the README there).
"""

from pathlib import Path

import pytest

from TextSegmentLib.prompts import load_terminology, match_prompt

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
