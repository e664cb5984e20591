"""Regression against frozen masks: the embedded default model, on a small stored real T1 (Colin27 at 3 mm), must
give the masks frozen in Testing/data/frozen for the demo prompts (Dice >= 0.99 each; 'liver' stays not found).

A deliberate model change regenerates them: ``.venv/bin/python scripts/regenerate_frozen_masks.py`` (see
Testing/frozen_case.py)."""

import numpy as np
import pytest
import SimpleITK as sitk
from frozen_case import IMAGE, MIN_DICE, dice, load, segment
from fuzz_helpers import one_torch_thread

from TextSegmentLib.catalog import load_catalog

REGENERATE = "if the model changed on purpose, run .venv/bin/python scripts/regenerate_frozen_masks.py and commit"


@pytest.fixture(scope="module")
def frozen():
    return load()


@pytest.fixture(scope="module")
def now(frozen):
    meta = frozen[0]
    with one_torch_thread():
        return segment(IMAGE, meta["prompts"])


def test_the_frozen_case_is_small_and_of_the_embedded_default_model(frozen):
    meta, masks, image = frozen
    assert sum(p.stat().st_size for p in IMAGE.parent.iterdir()) < 200_000
    assert meta["model"] == load_catalog().default_id(), f"the frozen masks are of {meta['model']}: {REGENERATE}"
    assert [int(m.sum()) for m in masks] == meta["voxels"] and image.GetSize() == sitk.ReadImage(str(IMAGE)).GetSize()
    assert sum(meta["found"]) >= 4 and not meta["found"][meta["prompts"].index("liver")]


def test_the_default_model_still_gives_the_frozen_masks(frozen, now):
    meta, masks, image = frozen
    result, current = now
    assert list(result.views) == meta["settings"]["views"]
    scores = {p: round(dice(a, b), 4) for p, a, b in zip(meta["prompts"], current, masks)}
    changed = {p: d for p, d in scores.items() if d < MIN_DICE}
    assert not changed, f"masks changed (Dice below {MIN_DICE}): {changed}; {REGENERATE}"
    for i, prompt in enumerate(meta["prompts"]):
        assert result.segments[i].found == meta["found"][i], prompt
    # the masks come back in the input's geometry (the stored masks carry it)
    labelmap = result.labelmap
    assert labelmap.GetSize() == image.GetSize() and np.allclose(labelmap.GetOrigin(), image.GetOrigin())
