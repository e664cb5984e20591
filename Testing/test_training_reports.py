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
