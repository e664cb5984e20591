"""Prompt generation: left/right swap under flips, spatial queries, held-out phrasings kept out of training."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is a folder of the repository, not installed

import random  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("yaml")

from training.augment import flip_lr  # noqa: E402
from training.prompting import PromptBank, spatial_target, swap_side  # noqa: E402
from training.vocabulary import Structure, build_structures, split_laterality  # noqa: E402

AAL_TXT = "1 Hippocampus_L 4101\n2 Hippocampus_R 4102\n3 Vermis_3 9120\n"


@pytest.fixture()
def structures(tmp_path):
    table = tmp_path / "names.txt"
    table.write_text(AAL_TXT)
    return build_structures(
        [
            {"table": True, "layer": "aal", "names_table": str(table), "names": "aal.yaml", "region": "brain"},
            {"name": "brain", "layer": "brain", "values": [1], "laterality": "bilateral"},
        ]
    )


def test_vocabulary_names_sides_and_partners(structures):
    by = {s.name: s for s in structures}
    assert set(by) == {"left hippocampus", "right hippocampus", "vermis lobule III", "brain"}
    assert by["left hippocampus"].partner == "right hippocampus"
    assert by["right hippocampus"].partner == "left hippocampus"
    assert by["vermis lobule III"].laterality == "midline"
    assert "HIP L" in by["left hippocampus"].synonyms
    assert split_laterality("kidney_left") == ("kidney", "left")
    assert split_laterality("Left-Putamen") == ("Putamen", "left")
    assert split_laterality("vertebrae_L1") == ("vertebrae_L1", None)


def test_heldout_phrasings_never_in_training_pool(structures):
    bank = PromptBank()
    assert len(bank.train) >= 40
    assert not set(bank.train) & set(bank.heldout)
    pool = bank.pool(structures, per_structure=60, seed=3)
    training = {p for ps in pool.values() for p in ps}
    heldout = set(bank.heldout_prompts(structures))
    assert heldout and not training & heldout
    # the held-out templates' own wording never shows up in any training prompt either
    for tpl in bank.heldout:
        marker = tpl.replace("{name}", "").strip(" ,.:")
        assert not any(marker in p for p in training), marker


def test_sided_prompts_name_their_side(structures):
    bank = PromptBank()
    left = next(s for s in structures if s.name == "left hippocampus")
    rng = random.Random(0)
    for _ in range(200):
        p = bank.sample(left, rng).lower()
        words = set(re.findall(r"[a-z]+", p.replace("_", " ")))
        assert words & {"left", "l", "lt"}, p
        assert not words & {"right", "r", "rt"}, p


def test_flip_swaps_left_and_right():
    # canonical axial slice: columns run from the patient's right (col 0) to the patient's left
    labels = np.zeros((8, 8), np.uint8)
    labels[3:5, 6:8] = 1  # left structure on the image right
    labels[3:5, 0:2] = 2  # right structure on the image left
    flipped = flip_lr(labels)
    assert (flipped[3:5, 0:2] == 1).all() and (flipped[3:5, 6:8] == 2).all()
    assert swap_side("left hippocampus") == "right hippocampus"
    assert swap_side("right putamen") == "left putamen"
    assert swap_side("brain") == "brain"


def test_sampler_flip_uses_partner_mask(tmp_path, structures):
    """A 'left X' prompt on a flipped slice targets the mirrored right X, which lies on the patient's left."""
    from training.data import CaseArrays

    lab = np.zeros((1, 8, 8), np.uint8)
    lab[0, 2:4, 6:8] = 1  # Hippocampus_L: patient's left = high columns
    lab[0, 2:4, 0:3] = 2  # Hippocampus_R, different shape
    case_dir = tmp_path / "c"
    case_dir.mkdir()
    np.save(case_dir / "image_mr.npy", np.zeros((1, 8, 8), np.uint8))
    np.save(case_dir / "layer_aal.npy", lab)
    np.save(case_dir / "counts.npy", np.zeros((1, 4), np.int32))
    case = CaseArrays(tmp_path, {"id": "c", "windows": ["mr"], "layers": ["aal"]})
    by = {s.name: s for s in structures}
    target = flip_lr(case.mask(by[by["left hippocampus"].partner], 0))
    assert target[:, 5:].sum() == 6 and target[:, :5].sum() == 0  # on the patient's left after the flip


def test_spatial_queries_pick_the_right_structure():
    a = np.zeros((20, 20), bool)
    a[1:4, 1:4] = True  # small, top, image-left = patient's right
    b = np.zeros((20, 20), bool)
    b[10:19, 12:19] = True  # large, bottom, patient's left
    c = np.zeros((20, 20), bool)
    c[8:12, 6:10] = True
    masks = {"a": a, "b": b, "c": c}
    assert spatial_target(masks, "largest") == "b"
    assert spatial_target(masks, "smallest") == "a"
    assert spatial_target(masks, "leftmost") == "b"
    assert spatial_target(masks, "rightmost") == "a"
    assert spatial_target(masks, "topmost") == "a"
    assert spatial_target(masks, "lowest") == "b"
    assert spatial_target({"x": np.zeros((4, 4), bool)}, "largest") is None
    flipped = {k: flip_lr(v) for k, v in masks.items()}
    assert spatial_target(flipped, "leftmost") == "a"


def test_structure_roundtrip(structures):
    s = structures[0]
    assert Structure.from_dict(s.to_dict()) == s
