"""A refinement respects the user's edits: it starts from the segment as it is in the node (Segment Editor edits
included), writes back only the slices it refines, and undo restores exactly what it changed (real MRML, slicer-core;
the edits are made as a Segment Editor effect makes them, SetBinaryLabelmapToSegment; a tiny random-weight model:
these tests are about what changes where, not how well).
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
pytest.importorskip("torch")

from mrml_helpers import changed_indices, edit_segment, head_array, slice_view, three_plane_bundle  # noqa: E402

from TextSegmentLib.slicer import bridge, markups  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.session import VoxelChange  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}
#: the refined axial slice (index k) and the box on it
SLICE = 8


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def worker():
    w = Worker(name="test-user-edits-worker")
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return three_plane_bundle(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def segmented(bundle, worker):
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    m = np.diag([-3.0, -2.0, 2.5, 1.0])
    volume = bridge.array_to_volume(scene, head_array(), m, name="head")
    logic = TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker)
    seg = logic.segment(volume, ["brain", "left hippocampus"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    for ijk in ((3.0, 4.0, SLICE), (20.0, 24.0, SLICE)):
        roi.AddControlPoint(vtk.vtkVector3d(*(m @ np.r_[ijk, 1.0])[:3]))
    markups.record_view_plane(roi, slice_view(scene, "Axial"))
    return scene, logic, volume, seg, sid, roi


def _array(seg, sid, volume):
    return bridge.segment_to_array(seg, sid, volume).astype(bool)


def test_an_edit_made_after_segment_is_kept_and_the_refinement_starts_from_it(segmented):
    scene, logic, volume, seg, sid, roi = segmented
    edited = _array(seg, sid, volume)
    edited[2:5] = False  # erased on axial slices 2-4
    edited[12:14, 5:15, 5:15] = True  # painted on slices 12-13
    edited[SLICE, :, :6] = True  # painted on the slice that will be refined
    edit_segment(seg, sid, edited, volume)
    np.testing.assert_array_equal(_array(seg, sid, volume), edited)

    logic.refine(seg, sid, roiNode=roi, maxPropagation=0)
    after = _array(seg, sid, volume)
    assert changed_indices(edited, after, axis=2) == {SLICE}  # only the refined slice changed ...
    outside = np.ones(after.shape[0], bool)
    outside[SLICE] = False
    np.testing.assert_array_equal(after[outside], edited[outside])  # ... the edits elsewhere are all kept
    engine = logic.session(seg).result.mask(0)
    np.testing.assert_array_equal(engine[outside], edited[outside])  # the engine refined what the user sees

    other = seg.GetSegmentation().GetSegmentIdBySegmentName("left hippocampus")
    hippocampus = _array(seg, other, volume)
    assert logic.undo(seg)
    np.testing.assert_array_equal(_array(seg, sid, volume), edited)  # exactly the state before the refinement
    np.testing.assert_array_equal(_array(seg, other, volume), hippocampus)


def test_undo_puts_back_only_the_refined_voxels_after_later_edits(segmented):
    scene, logic, volume, seg, sid, roi = segmented
    before = _array(seg, sid, volume)
    logic.refine(seg, sid, roiNode=roi, maxPropagation=1)
    refined = _array(seg, sid, volume)
    change = logic.session(seg).undo[-1].voxels
    assert change.count == int((before != refined).sum()) > 0
    assert changed_indices(before, refined, axis=2) <= {SLICE - 1, SLICE, SLICE + 1}

    later = refined.copy()
    later[0:2] = True  # an edit made after the refinement, on slices it did not touch
    edit_segment(seg, sid, later, volume)
    assert logic.undo(seg)
    expected = later.copy()
    expected[before != refined] = before[before != refined]
    np.testing.assert_array_equal(_array(seg, sid, volume), expected)  # the later edit stays, the refinement goes
    assert _array(seg, sid, volume)[0:2].all()


def test_voxel_change_is_exact_and_refuses_another_grid():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 5, 6)) > 0.5, rng.random((4, 5, 6)) > 0.5
    change = VoxelChange.between("s", a, b)
    np.testing.assert_array_equal(change.apply(a, undo=False), b)
    np.testing.assert_array_equal(change.apply(b, undo=True), a)
    assert change.count == int((a != b).sum())
    with pytest.raises(ValueError, match="grid changed"):
        change.apply(np.zeros((4, 5, 7), bool))


def test_sessions_are_shared_per_scene_and_end_with_it(segmented):
    from TextSegmentLib.slicer.session import registry_for

    scene, logic, volume, seg, sid, roi = segmented
    other = TextSegmentLogic(scene, model=logic.model, device="cpu", worker=logic.worker)
    assert other.session(seg) is logic.session(seg) and other.canUndo(seg)  # e.g. the Segment Editor effect's
    assert registry_for(slicer.vtkMRMLScene()).get(seg) is None  # another scene has its own
    scene.Clear(0)  # File > Close scene: node ids start again, the sessions go
    assert len(registry_for(scene)) == 0 and logic.session(seg) is None
