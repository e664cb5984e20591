"""Refinement in the plane of the view it was drawn on, through TextSegmentLogic on real MRML (slicer-core).

A box drawn with two clicks on the coronal view (an ROI flat in anterior-posterior, recorded as the module's box tool
records it) must change the segment on that coronal slice only (``maxPropagation=0``) or on coronal slices next to
it (propagation along A-P); +/- points placed on the sagittal view do the same on sagittal slices; undo restores
each. A tiny random-weight model whose card lists the three planes is enough: the test is about where the change
happens, not its quality. A model trained on axial slices only gets a message naming the view to use.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
sitk = pytest.importorskip("SimpleITK")
pytest.importorskip("torch")

from TextSegmentLib.slicer import bridge, markups  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared two-core machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def worker():
    w = Worker(name="test-planes-worker")
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def three_plane_bundle(tmp_path_factory):
    """The tiny test model (Testing/conftest.py) with a card saying it was trained on all three planes."""
    import torch
    from conftest import TINY_MODEL_CONFIG, TINY_VOCABULARY

    from TextSegmentLib.checkpoint import save_bundle
    from TextSegmentLib.model import build_model

    torch.manual_seed(0)
    card = {"name": "tiny-three-planes", "vocabulary": TINY_VOCABULARY}
    card["input"] = {"planes": ["axial", "coronal", "sagittal"]}
    return save_bundle(build_model(TINY_MODEL_CONFIG), tmp_path_factory.mktemp("bundles") / "tiny3", card)


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    return scene


def _view(scene, orientation):
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetOrientation(orientation)
    return node


def _segmented(scene, bundle, worker):
    """A 'brain' segment of a small LPS-stored head (i along L, j along P, k along S; 3 x 2 x 2.5 mm)."""
    k, j, i = np.meshgrid(np.linspace(-1, 1, 16), np.linspace(-1, 1, 28), np.linspace(-1, 1, 24), indexing="ij")
    array = (300 * (i**2 + j**2 + k**2 < 0.8) + 40 * i + 20 * j).astype(np.float32)
    volume = bridge.array_to_volume(scene, array, np.diag([-3.0, -2.0, 2.5, 1.0]), name="head")
    logic = TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker)
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    return logic, volume, seg, seg.GetSegmentation().GetSegmentIdBySegmentName("brain")


@pytest.fixture
def segmented(scene, three_plane_bundle, worker):
    return _segmented(scene, three_plane_bundle, worker)


def _changed_indices(before, after, axis):
    """Indices along index axis ``axis`` (0=i, 1=j, 2=k) of the slices where the mask changed."""
    numpy_axis = 2 - axis
    other = tuple(a for a in range(3) if a != numpy_axis)
    return set(np.flatnonzero((before != after).any(axis=other)).tolist())


def test_box_on_the_coronal_view_refines_coronal_slices_and_undo_restores(scene, segmented):
    logic, volume, seg, sid = segmented
    before = bridge.segment_to_array(seg, sid, volume)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    for corner in ((-60.0, -20.0, 5.0), (-12.0, -20.0, 30.0)):  # two clicks on the coronal plane A = -20 mm
        roi.AddControlPoint(vtk.vtkVector3d(*corner))
    assert sorted(roi.GetSize()) == pytest.approx([25.0, 25.0, 48.0])  # depth = shortest side: no flat side
    markups.record_view_plane(roi, _view(scene, "Coronal"))
    _, prompts = logic.refinePrompts(seg, sid, roi)
    assert prompts.plane == "coronal" and prompts.slice_ijk[1] == pytest.approx(10.0)  # A = -20 mm: j = 10
    np.testing.assert_allclose(prompts.box, [(4.0, 10.0, 2.0), (20.0, 10.0, 12.0)], atol=1e-6)

    logic.refine(seg, sid, roiNode=roi, maxPropagation=0)
    after = bridge.segment_to_array(seg, sid, volume)
    assert _changed_indices(before, after, axis=1) == {round(prompts.slice_ijk[1])}, "one coronal slice changes"
    np.testing.assert_array_equal(after, logic._sessions[seg.GetID()].result.mask(0))

    logic.refine(seg, sid, roiNode=roi, maxPropagation=1)  # the change may spread to one coronal slice each way
    spread = bridge.segment_to_array(seg, sid, volume)
    centre = round(prompts.slice_ijk[1])
    assert _changed_indices(after, spread, axis=1) <= {centre - 1, centre, centre + 1}

    assert logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), after)
    assert logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    np.testing.assert_array_equal(logic._sessions[seg.GetID()].result.mask(0), before)


def test_points_on_the_sagittal_view_refine_a_sagittal_slice_and_undo_restores(scene, segmented):
    logic, volume, seg, sid = segmented
    before = bridge.segment_to_array(seg, sid, volume)
    sagittal = _view(scene, "Sagittal")
    plus = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "plus")
    minus = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "minus")
    minus.SetAttribute(markups.POINT_LABEL_ATTRIBUTE, "negative")
    # on sagittal slice i = 3 (R = -9 mm): the + point off the segment, the - point on it (IJK-to-RAS diag(-3, -2, 2.5))
    off, on = np.argwhere(~before[:, :, 3]), np.argwhere(before[:, :, 3])
    assert len(off) and len(on), "the slice holds segment and background"
    (k0, j0), (k1, j1) = off[len(off) // 2], on[len(on) // 2]
    plus.AddControlPoint(vtk.vtkVector3d(-9.0, -2.0 * j0, 2.5 * k0))
    markups.record_view_plane(plus, sagittal)
    minus.AddControlPoint(vtk.vtkVector3d(-9.0, -2.0 * j1, 2.5 * k1))
    markups.record_view_plane(minus, sagittal)
    _, prompts = logic.refinePrompts(seg, sid, None, (plus, minus))
    assert prompts.plane == "sagittal" and prompts.labels == [1, 0] and prompts.slice_ijk[0] == pytest.approx(3.0)

    logic.refine(seg, sid, pointListNode=(plus, minus), maxPropagation=0)
    after = bridge.segment_to_array(seg, sid, volume)
    assert _changed_indices(before, after, axis=0) == {3}, "one sagittal slice changes"
    assert logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)


def test_a_box_on_a_plane_the_model_was_not_trained_on_gets_a_message(scene, tiny_bundle, worker):
    logic, volume, seg, sid = _segmented(scene, tiny_bundle, worker)  # a card without planes: axial only
    assert logic.refinePlanes() == ("axial",)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    for corner in ((-60.0, -20.0, 5.0), (-12.0, -20.0, 30.0)):
        roi.AddControlPoint(vtk.vtkVector3d(*corner))
    markups.record_view_plane(roi, _view(scene, "Coronal"))
    before = bridge.segment_to_array(seg, sid, volume)
    with pytest.raises(bridge.BridgeError, match=r"cannot refine on the coronal plane.*axial \(red\) view"):
        logic.refine(seg, sid, roiNode=roi)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    assert len(logic._sessions[seg.GetID()].undo) == 1  # only the segment step
