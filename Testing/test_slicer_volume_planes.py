"""Planes belong to the volume: a view's slice normal, recorded in world coordinates, is mapped through the volume's
IJK-to-world matrix and its parent transform onto the volume's own slices (real MRML, slicer-core).

Two volumes that the old world-axis rule got wrong: one acquired 30 degrees oblique (Slicer turns its views to the
volume's planes, which the old rule refused as "oblique"), and one under a parent transform rotating it 90 degrees
(its axial slices show in the world's coronal view, where the old rule refined coronal slices of the volume). A view
truly oblique to the volume's slices gets a message naming what to do. The refinements run through
TextSegmentLogic with a tiny random-weight model: the tests are about which slices change, not how well.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from mrml_helpers import (  # noqa: E402
    changed_indices,
    head_array,
    oblique_matrix,
    slice_view,
    three_plane_bundle,
    view_of_volume_slices,
)

from TextSegmentLib.slicer import bridge, markups, planes  # noqa: E402
from TextSegmentLib.slicer.bridge import BridgeError  # noqa: E402

OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}
SPACING = np.diag([2.0, 2.0, 2.5])


def _rotation_x(degrees):
    a = np.radians(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def _oblique_matrix(degrees=30.0):
    return oblique_matrix(degrees, np.diag(SPACING))


def _ras(m, ijk):
    return (m @ np.r_[np.asarray(ijk, float), 1.0])[:3]


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    return scene


def _view_of_volume_slices(scene, m, axis=2):
    return view_of_volume_slices(scene, m, axis)


def _two_click_roi(scene, a, b):
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.AddControlPoint(vtk.vtkVector3d(*a))
    roi.AddControlPoint(vtk.vtkVector3d(*b))
    return roi


def _view_aligned_roi(scene, m, lo_ijk, hi_ijk):
    """An ROI oriented like the volume's slices (as drawn on a view turned to them), corners ``lo``/``hi``."""
    d = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = d
    object_to_node[:3, 3] = _ras(m, (np.asarray(lo_ijk) + hi_ijk) / 2)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "aligned box")
    roi.SetAndObserveObjectToNodeMatrix(bridge.np_to_vtk(object_to_node))
    size = (np.asarray(hi_ijk, float) - lo_ijk) * np.diag(SPACING)
    roi.AddControlPoint(vtk.vtkVector3d(*_ras(m, (np.asarray(lo_ijk) + hi_ijk) / 2)))
    roi.SetSize(*np.maximum(size, 1.0))
    return roi


def test_a_view_turned_to_an_oblique_volume_refines_its_slices(scene):
    m = _oblique_matrix(30.0)
    volume = bridge.array_to_volume(scene, head_array(), m, name="oblique")
    view = _view_of_volume_slices(scene, m, axis=2)
    assert markups.plane_of_slice_node(view) is None  # 30 degrees from every world axis: the old rule refused it

    lo, hi = (6.0, 8.0, 7.0), (16.0, 20.0, 7.0)
    roi = _two_click_roi(scene, _ras(m, lo), _ras(m, hi))  # MRML makes it world-axis-aligned
    markups.record_view_plane(roi, view)
    prompts = markups.markups_to_prompts(roi, None, volume)
    assert prompts.axis == 2 and prompts.plane == planes.plane_of_index_axis(volume, 2) == "axial"
    assert prompts.slice_ijk[2] == pytest.approx(7.0)
    box_lo, box_hi = np.array(prompts.box[0]), np.array(prompts.box[1])
    assert np.all(box_lo[:2] <= np.array(lo[:2]) + 1e-6) and np.all(box_hi[:2] >= np.array(hi[:2]) - 1e-6)

    aligned = _view_aligned_roi(scene, m, lo, hi)
    markups.record_view_plane(aligned, view)
    prompts = markups.markups_to_prompts(aligned, None, volume)
    np.testing.assert_allclose(prompts.box, [lo, hi], atol=1e-6)  # exactly the rectangle drawn

    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(*_ras(m, (9.0, 12.0, 7.0))))
    points.AddControlPoint(vtk.vtkVector3d(*_ras(m, (11.0, 15.0, 7.0))), "-")
    markups.record_view_plane(points, view)
    prompts = markups.markups_to_prompts(None, points, volume)
    assert prompts.axis == 2 and prompts.labels == [1, 0]
    np.testing.assert_allclose(prompts.points, [(9.0, 12.0, 7.0), (11.0, 15.0, 7.0)], atol=1e-6)


def test_a_reformat_oblique_to_the_volume_gets_a_message(scene):
    volume = bridge.array_to_volume(scene, head_array(), _oblique_matrix(30.0), name="oblique")
    axial = slice_view(scene, "Axial")  # the world's axial view: 30 degrees off this volume's slices
    roi = _two_click_roi(scene, (-5.0, -10.0, 0.0), (15.0, 10.0, 0.0))
    markups.record_view_plane(roi, axial)
    with pytest.raises(BridgeError, match=r"30 degrees oblique to the volume's slices.*Rotate to volume plane"):
        markups.markups_to_prompts(roi, None, volume)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0))
    markups.record_view_plane(points, axial)
    with pytest.raises(BridgeError, match=r"\+/- points lie on a view that is 30 degrees oblique"):
        markups.markups_to_prompts(None, points, volume)
    # A plane given by name still works (the volume's own nearest slices).
    assert markups.markups_to_prompts(roi, None, volume, plane="axial").axis == 2


def _rotated(scene):
    """An LPS-stored head under a parent transform turning it 90 degrees about R: its axial (k) slices lie in the
    world's coronal plane."""
    m = np.diag([-3.0, -2.0, 2.5, 1.0])
    volume = bridge.array_to_volume(scene, head_array(), m, name="rotated")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "turn")
    to_parent = np.eye(4)
    to_parent[:3, :3] = _rotation_x(90.0)
    transform.SetMatrixTransformToParent(bridge.np_to_vtk(to_parent))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    return volume, to_parent @ m  # IJK -> world


def test_a_rotating_transform_maps_the_world_view_to_the_volume_slices(scene):
    volume, ijk_to_world = _rotated(scene)
    coronal = slice_view(scene, "Coronal")
    lo, hi = (5.0, 6.0, 7.0), (15.0, 20.0, 7.0)
    roi = _two_click_roi(scene, _ras(ijk_to_world, lo), _ras(ijk_to_world, hi))  # drawn in world coordinates
    markups.record_view_plane(roi, coronal)
    prompts = markups.markups_to_prompts(roi, None, volume)
    assert prompts.axis == 2 and prompts.plane == "axial"  # the volume's axial slices, not its coronal ones
    np.testing.assert_allclose(prompts.box, [lo, hi], atol=1e-6)
    sagittal = slice_view(scene, "Sagittal")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(*_ras(ijk_to_world, (8.0, 10.0, 5.0))))
    markups.record_view_plane(points, sagittal)
    assert markups.markups_to_prompts(None, points, volume).plane == "sagittal"  # R stays R under this turn


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("torch")
    return three_plane_bundle(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="module")
def worker():
    from TextSegmentLib.slicer.worker import Worker

    w = Worker(name="test-volume-planes-worker")
    yield w
    w.shutdown()


def _refine_changes_only(scene, volume, roi, bundle, worker, axis, index):
    import torch

    from TextSegmentLib.slicer.logic import TextSegmentLogic

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logic = TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker)
        seg = logic.segment(volume, ["brain"], **OPTIONS)
        sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
        before = bridge.segment_to_array(seg, sid, volume)
        logic.refine(seg, sid, roiNode=roi, maxPropagation=0)
        after = bridge.segment_to_array(seg, sid, volume)
        assert changed_indices(before, after, axis) == {index}
        assert logic.undo(seg)
        np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    finally:
        torch.set_num_threads(threads)


def test_refine_on_the_oblique_volume_changes_one_of_its_slices(scene, bundle, worker):
    m = _oblique_matrix(30.0)
    volume = bridge.array_to_volume(scene, head_array(), m, name="oblique")
    roi = _view_aligned_roi(scene, m, (4.0, 5.0, 8.0), (20.0, 23.0, 8.0))
    markups.record_view_plane(roi, _view_of_volume_slices(scene, m, axis=2))
    _refine_changes_only(scene, volume, roi, bundle, worker, axis=2, index=8)


def test_refine_under_the_rotating_transform_changes_one_axial_slice(scene, bundle, worker):
    volume, ijk_to_world = _rotated(scene)
    roi = _two_click_roi(scene, _ras(ijk_to_world, (3.0, 4.0, 6.0)), _ras(ijk_to_world, (20.0, 24.0, 6.0)))
    markups.record_view_plane(roi, slice_view(scene, "Coronal"))
    _refine_changes_only(scene, volume, roi, bundle, worker, axis=2, index=6)


def test_a_slightly_tilted_volume_in_a_world_view_uses_its_nearest_slices(scene):
    """Slicer keeps world-aligned views for a volume tilted 12 degrees: a box drawn there refines the volume's
    nearest slices (its section through the box's centre), as before."""
    m = _oblique_matrix(12.0)
    volume = bridge.array_to_volume(scene, head_array(), m, name="tilted")
    centre = _ras(m, (12.0, 14.0, 7.0))
    roi = _two_click_roi(scene, centre + (-10.0, -8.0, 0.0), centre + (10.0, 8.0, 0.0))  # on the world axial view
    markups.record_view_plane(roi, slice_view(scene, "Axial"))
    prompts = markups.markups_to_prompts(roi, None, volume)
    assert prompts.axis == 2 and prompts.slice_ijk[2] == pytest.approx(7.0, abs=1e-6)
