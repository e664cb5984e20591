"""The robustness report resumes an interrupted run only from segmentations that match it."""

import json
import shutil
from pathlib import Path

from fuzz_helpers import small_volume

from TextSegmentLib.resources import EMBEDDED_MODELS_DIR
from training.heldout import run_cli
from training.robustness import Runner

MODELS = EMBEDDED_MODELS_DIR


def test_resume_reuses_only_a_finished_run_of_the_same_prompts_and_model(tmp_path):
    model = sorted(MODELS.glob("textsegment-brain-lite-v*"))[-1]
    image = small_volume(tmp_path / "in.nii.gz")
    output = tmp_path / "seg_variant.nii.gz"
    texts = ["left putamen", "brain"]
    segments, _ = run_cli(str(model), image, texts, output, "cpu", ["--views", "axial"])

    runner = Runner(str(model), tmp_path, "cpu", resume=True)
    reused = runner._finished(output, texts)
    assert reused is not None and [s["prompt"] for s in reused[0]] == texts and reused[0] == segments
    assert runner._finished(output, ["left putamen", "cerebellum"]) is None  # other prompts: run again

    # a bundle of another version (same weights, other card version) does not reuse it
    other = tmp_path / "other_model"
    shutil.copytree(model, other)
    card = json.loads((other / "model.json").read_text())
    card["version"] = "0.0.1"
    (other / "model.json").write_text(json.dumps(card))
    assert Runner(str(other), tmp_path, "cpu", resume=True)._finished(output, texts) is None

    # the report is written after the labelmap: without it the run did not finish
    Path(str(output) + ".json").unlink()
    assert runner._finished(output, texts) is None


def test_the_uncut_scans_segments_are_scored_within_the_cut_field_of_view():
    """The FOV rows of the robustness report are set beside the uncut scan's segments scored in the same region: a
    structure a cut leaves a sliver of scores what the whole-head segment scores there, not the whole structure."""
    import numpy as np
    import SimpleITK as sitk

    from training.robustness_edges import same_region_dice

    truth = np.zeros((20, 10, 10), np.uint8)
    truth[2:18, 3:7, 3:7] = 5  # AAL code 5
    pred = np.zeros_like(truth)
    pred[2:12, 3:7, 3:7] = 1  # the uncut segmentation (label 1) misses the top of it
    whole, ref = sitk.GetImageFromArray(pred), sitk.GetImageFromArray(truth)
    cut_low = sitk.RegionOfInterest(ref, [10, 10, 10], [0, 0, 0])  # slices 0..9: the segment is right there
    cut_high = sitk.RegionOfInterest(ref, [10, 10, 10], [0, 0, 10])  # slices 10..19: mostly missed there
    assert same_region_dice(whole, cut_low, [1], [[5]]) == 1.0
    assert abs(same_region_dice(whole, cut_high, [1], [[5]]) - 2 * 2 / (2 + 8)) < 1e-3
    assert same_region_dice(whole, ref, [1], [[5]]) < 1.0
