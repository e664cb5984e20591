"""The Segment Editor effect "Text prompt" without Qt: its logic (TextSegmentLib/slicer/effect_logic.py) on real MRML
(slicer-core), the writes done by Slicer's own C++ segment editor logic (vtkSlicerSegmentEditorLogic, as the effect's
``modifySelectedSegmentByLabelmap`` does in Slicer: masking, overwrite, undo). A tiny random-weight model: the tests
are about where the segment changes and what the editor's settings protect, not how well.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
pytest.importorskip("torch")

from mrml_helpers import (  # noqa: E402
    changed_indices,
    edit_segment,
    head_array,
    oblique_matrix,
    slice_view,
    three_plane_bundle,
    view_of_volume_slices,
)

from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.effect_logic import TextPromptEffectLogic  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import JobWatcher, Worker  # noqa: E402

OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}
IJK_TO_RAS = np.diag([-3.0, -2.0, 2.5, 1.0])  # i along L, j along P, k along S
#: (slice view orientation, index axis of its slices, the slice clicked, two box corners (i, j, k) on it)
VIEWS = [
    ("Axial", 2, 8, ((3.0, 4.0, 8.0), (20.0, 24.0, 8.0))),
    ("Coronal", 1, 12, ((3.0, 12.0, 2.0), (20.0, 12.0, 13.0))),
    ("Sagittal", 0, 10, ((10.0, 4.0, 2.0), (10.0, 24.0, 13.0))),
]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def worker():
    w = Worker(name="test-effect-worker")
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return three_plane_bundle(tmp_path_factory.mktemp("bundles"))


class Editor:
    """Slicer's segment editor logic on one segmentation (what the effect's editor calls do in Slicer)."""

    def __init__(self, scene, seg, volume):
        self.node = slicer.vtkMRMLSegmentEditorNode()  # not registered with a plain MRML scene
        scene.AddNode(self.node)
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetSegmentEditorNode(self.node)
        self.logic.SetSegmentationNode(seg)
        self.logic.SetSourceVolumeNode(volume)
        self.seg = seg

    def select(self, segment_id):
        self.node.SetSelectedSegmentID(segment_id)

    def write(self, image):
        """saveStateForUndo, then modifySelectedSegmentByLabelmap(image, ModificationModeSet)."""
        assert self.logic.SaveStateForUndo()
        sid = self.node.GetSelectedSegmentID()
        self.logic.ModifySegmentByLabelmap(self.seg, sid, image, self.logic.ModificationModeSet, True, False)


@pytest.fixture
def setup(bundle, worker):
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    volume = bridge.array_to_volume(scene, head_array(), IJK_TO_RAS, name="head")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    bridge.prepare_segmentation_node(seg, volume)
    seg.GetSegmentation().AddEmptySegment("finished", "finished")
    seg.GetSegmentation().AddEmptySegment("Segment_1", "Segment_1")
    finished = np.zeros(head_array().shape, bool)
    finished[4:12, 8:20, 6:18] = True  # a finished segment in the middle of the head
    edit_segment(seg, "finished", finished, volume)
    effect = TextPromptEffectLogic(TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker))
    editor = Editor(scene, seg, volume)
    editor.select("Segment_1")
    return scene, volume, seg, effect, editor, finished


def _wait(job):
    JobWatcher(job).wait()
    return job.get()


def _array(seg, sid, volume):
    return bridge.segment_to_array(seg, sid, volume).astype(bool)


def _segment(effect, editor, volume, seg, sid="Segment_1"):
    result = _wait(effect.segmentAsync(volume, "brain", **OPTIONS))
    editor.write(effect.segmentLabelmap(volume, seg, sid, result))
    return result


def test_text_goes_into_the_selected_segment_honouring_masking_and_undo(setup):
    scene, volume, seg, effect, editor, finished = setup
    editor.node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedOutsideAllSegments)  # protect "finished"
    result = _segment(effect, editor, volume, seg)
    written = _array(seg, "Segment_1", volume)
    wanted = result.mask(0)
    assert written.any() and (wanted & finished).any()  # the prompt's segment reaches into the finished one ...
    np.testing.assert_array_equal(written, wanted & ~finished)  # ... which the editor's masking kept out
    np.testing.assert_array_equal(_array(seg, "finished", volume), finished)
    assert seg.GetSegmentation().GetNumberOfSegments() == 2  # written into the selected segment, none added

    editor.logic.Undo()  # Ctrl+Z in the editor
    assert not _array(seg, "Segment_1", volume).any()
    np.testing.assert_array_equal(_array(seg, "finished", volume), finished)


def test_overwrite_all_segments_takes_the_voxels_from_the_others(setup):
    scene, volume, seg, effect, editor, finished = setup
    editor.node.SetOverwriteMode(editor.node.OverwriteAllSegments)
    result = _segment(effect, editor, volume, seg)
    np.testing.assert_array_equal(_array(seg, "Segment_1", volume), result.mask(0))
    np.testing.assert_array_equal(_array(seg, "finished", volume), finished & ~result.mask(0))
    editor.logic.Undo()
    np.testing.assert_array_equal(_array(seg, "finished", volume), finished)


@pytest.mark.parametrize("orientation, axis, index, corners", VIEWS, ids=[v[0] for v in VIEWS])
def test_a_box_clicked_on_a_slice_view_refines_that_slice(setup, orientation, axis, index, corners):
    scene, volume, seg, effect, editor, finished = setup
    editor.node.SetOverwriteMode(editor.node.OverwriteNone)
    _segment(effect, editor, volume, seg)
    before = _array(seg, "Segment_1", volume)
    view = slice_view(scene, orientation)
    ras = [(IJK_TO_RAS @ np.r_[c, 1.0])[:3] for c in corners]
    assert effect.click("box", ras[0], view) == "box corner" and not effect.ready()
    assert effect.click("box", ras[1], view) == "box" and effect.ready()
    assert effect.click("positive", (IJK_TO_RAS @ np.r_[np.mean(corners, axis=0), 1.0])[:3], view) == "+"

    job = effect.refineAsync(seg, "Segment_1", maxPropagation=0)
    _wait(job)
    editor.write(effect.refinedLabelmap(seg, "Segment_1"))
    after = _array(seg, "Segment_1", volume)
    assert changed_indices(before, after, axis) == {index}  # one slice of the clicked view's plane
    assert effect.clicks() == {"box": 0, "positive": 0, "negative": 0}
    np.testing.assert_array_equal(_array(seg, "finished", volume), finished)
    editor.logic.Undo()
    np.testing.assert_array_equal(_array(seg, "Segment_1", volume), before)


def test_a_click_on_another_view_starts_anew_and_a_refinement_needs_clicks(setup):
    scene, volume, seg, effect, editor, finished = setup
    axial, coronal = slice_view(scene, "Axial"), slice_view(scene, "Coronal")
    effect.click("box", (0.0, 0.0, 10.0), axial)
    effect.click("negative", (5.0, -10.0, 10.0), axial)
    assert effect.clicks() == {"box": 1, "positive": 0, "negative": 1}
    effect.click("positive", (0.0, -20.0, 5.0), coronal)
    assert effect.clicks() == {"box": 0, "positive": 1, "negative": 0}
    effect.clear()
    _segment(effect, editor, volume, seg)
    with pytest.raises(bridge.BridgeError, match="draw a box"):
        effect.refineAsync(seg, "Segment_1")
    with pytest.raises(bridge.BridgeError, match="type what to segment"):
        effect.segmentAsync(volume, "  ")


def test_clicks_on_a_view_turned_to_an_oblique_volume_give_the_box_drawn(bundle, worker):
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    m = oblique_matrix(30.0)
    volume = bridge.array_to_volume(scene, head_array(), m, name="oblique")
    effect = TextPromptEffectLogic(TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker))
    seg = effect.logic.segment(volume, ["brain"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    view = view_of_volume_slices(scene, m, axis=2)
    corners = ((6.0, 8.0, 7.0), (16.0, 20.0, 7.0))
    for corner in corners:
        effect.click("box", (m @ np.r_[corner, 1.0])[:3], view)
    prompts = effect.prompts(seg, sid)
    assert prompts.axis == 2 and prompts.plane == "axial"
    np.testing.assert_allclose(prompts.box, corners, atol=1e-6)  # the rectangle clicked, not the ROI's bounds
    before = bridge.segment_to_array(seg, sid, volume)
    _wait(effect.refineAsync(seg, sid, maxPropagation=0))
    after = effect.logic.refinementChange(seg, sid).apply(before.astype(bool), undo=False)
    assert changed_indices(before.astype(bool), after, axis=2) == {7}


def test_module_and_effect_segments_stay_refinable_together(bundle, worker):
    scene = slicer.vtkMRMLScene()
    volume = bridge.array_to_volume(scene, head_array(), IJK_TO_RAS, name="head")
    module_logic = TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker)
    seg = module_logic.segment(volume, ["brain", "left hippocampus"], **OPTIONS)
    effect = TextPromptEffectLogic(TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker))
    assert effect.logic.session(seg) is module_logic.session(seg)  # one registry per scene
    result = _wait(effect.segmentAsync(volume, "brain", **OPTIONS))
    effect.segmentLabelmap(volume, seg, "brain", result)  # the effect re-made the module's "brain"
    session = module_logic.session(seg)
    assert session.lookup("brain")[0] is result and len(module_logic.results(seg)) == 2  # the table keeps its rows
    module_logic.segment(volume, ["left hippocampus"], seg, **OPTIONS)  # the module re-segments the other one
    session = module_logic.session(seg)
    assert session.lookup("brain")[0] is result  # still refinable, with the effect's result
    assert session.lookup("left_hippocampus")[0] is session.result
    module_logic.undo(seg)  # the re-segmentation undone: back to the earlier session
    assert module_logic.session(seg).lookup("brain")[0] is result
