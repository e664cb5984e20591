"""A prompt is read once: the query made in the application layer reaches the engine, the writers and the Slicer
logic, and nothing downstream matches the prompt text again (real MRML through slicer-core, a real tiny model)."""

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("torch")

import TextSegmentLib.engine.segmenter as segmenter_module  # noqa: E402
import TextSegmentLib.prompts as prompts_package  # noqa: E402
import TextSegmentLib.prompts.query as query_module  # noqa: E402
from TextSegmentLib.engine.writers import save_result  # noqa: E402
from TextSegmentLib.prompts import TAG_READING, Query  # noqa: E402
from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

PROMPTS = ["Brain", "left hippocampal formation", "lung rt", "tumour"]
OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}


@pytest.fixture
def calls(monkeypatch):
    """Every reading of a prompt, wherever it is made (the parser, through every name it is imported under)."""
    seen = []
    real = query_module.parse_query

    def spy(prompt, *args, **kwargs):
        seen.append(prompt)
        return real(prompt, *args, **kwargs)

    for module in (query_module, prompts_package, segmenter_module):
        monkeypatch.setattr(module, "parse_query", spy)
    return seen


def test_each_prompt_is_read_once_from_the_prompt_box_to_the_files(calls, tiny_bundle, tmp_path):
    scene = slicer.vtkMRMLScene()
    worker = Worker(name="test-query-worker")
    try:
        logic = TextSegmentLogic(scene, model=str(tiny_bundle), device="cpu", worker=worker)
        array = np.random.default_rng(0).random((12, 24, 20)).astype(np.float32)
        volume = bridge.array_to_volume(scene, array, np.diag([-2.0, -2.0, 2.0, 1.0]), name="scan")
        node = logic.segment(volume, PROMPTS, **OPTIONS)
        result = logic._sessions[node.GetID()].result
        save_result(result, tmp_path / "out.seg.nrrd")
        save_result(result, tmp_path / "out.nii.gz")
    finally:
        worker.shutdown()
    assert calls == PROMPTS  # one reading per prompt: segment, colour, terminology, tags, files
    queries = [state.query for state in result.states]
    assert all(isinstance(q, Query) for q in queries)
    segmentation = node.GetSegmentation()
    for i, query in enumerate(queries):  # what Slicer shows is the query's (colour, terminology, reading)
        segment = segmentation.GetSegment(logic.segmentIds(node)[i])
        assert segment.GetColor() == pytest.approx(query.color)
        assert bridge.get_tag(segment, TAG_READING) == query.reading
    hippocampus = segmentation.GetSegment(logic.segmentIds(node)[1])
    assert "SCT^7771000^Left" in bridge.get_tag(hippocampus, hippocampus.GetTerminologyEntryTagName())
    report = json.loads((tmp_path / "out.seg.nrrd.json").read_text())
    assert [s["reading"] for s in report["segments"]] == [q.reading for q in queries]
    assert report["segments"][3]["kind"] == "finding" and not report["segments"][3]["found"]
    assert logic.results(node)[2].side_read == "'rt' read as right (abbreviation)"
