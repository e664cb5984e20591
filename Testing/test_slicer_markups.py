"""Markups -> refinement prompts on real MRML (slicer-core): the plane of the view, the box face, +/- points.

ROIs are made the way Slicer makes them from two clicks on a slice view (two control points on the view's plane:
MRML's ROI node then gives the box a depth equal to its shortest side), and views are real slice nodes.
"""

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from TextSegmentLib.slicer import bridge, markups  # noqa: E402
from TextSegmentLib.slicer.bridge import BridgeError  # noqa: E402

#: IJK-to-RAS of the test volumes: i along L (LPS storage), j along P, k along S, 1 x 1 x 2 mm
LPS = np.diag([-1.0, -1.0, 2.0, 1.0])
#: the same voxels stored sagittal-first: i along S, j along R, k along A
PERMUTED = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    return scene


def _view(scene, orientation):
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetOrientation(orientation)
    return node


def _volume(scene, m=LPS, shape=(20, 30, 40)):
    return bridge.array_to_volume(scene, np.zeros(shape, np.int16), m, name="v")


def _ras(m, ijk):
    return (m @ np.r_[np.asarray(ijk, float), 1.0])[:3]


def _two_click_roi(scene, a_ras, b_ras):
    """An ROI as the ROI tool makes it: two control points, MRML sizes and centres the box."""
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.AddControlPoint(vtk.vtkVector3d(*a_ras))
    roi.AddControlPoint(vtk.vtkVector3d(*b_ras))
    return roi


def test_plane_of_slice_views(scene):
    assert markups.plane_of_slice_node(_view(scene, "Axial")) == "axial"
    assert markups.plane_of_slice_node(_view(scene, "Coronal")) == "coronal"
    assert markups.plane_of_slice_node(_view(scene, "Sagittal")) == "sagittal"
    oblique = _view(scene, "Axial")
    rotation = vtk.vtkTransform()
    rotation.RotateX(40)
    slice_to_ras = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(rotation.GetMatrix(), oblique.GetSliceToRAS(), slice_to_ras)
    oblique.GetSliceToRAS().DeepCopy(slice_to_ras)
    assert markups.plane_of_slice_node(oblique) is None
    assert markups.plane_of_normal((0.0, 0.2, -1.0)) == "axial"


@pytest.mark.parametrize("m", [LPS, PERMUTED], ids=["lps", "permuted"])
def test_two_click_box_on_the_coronal_view(scene, m):
    volume = _volume(scene, m)
    # 60 mm (L-R) x 40 mm (S-I) on the coronal plane A = -12: MRML makes it 60 x 40 x 40 mm.
    roi = _two_click_roi(scene, (-30.0, -12.0, 10.0), (30.0, -12.0, 50.0))
    assert roi.GetSize() == pytest.approx((60.0, 40.0, 40.0))
    with pytest.raises(BridgeError, match="cannot tell which view"):
        markups.roi_plane(roi, volume)  # depth == shortest side: the sizes cannot tell
    assert markups.record_view_plane(roi, _view(scene, "Coronal")) == "coronal"
    prompts = markups.markups_to_prompts(roi, None, volume)
    assert prompts.plane == "coronal" and prompts.points is None
    lo, hi = (np.array(c) for c in prompts.box)
    corners = np.array([_ras(np.linalg.inv(m), p) for p in [(-30, -12, 10), (30, -12, 50)]])
    a_axis = int(np.argmax(np.abs(m[1, :3])))  # the index axis along A
    np.testing.assert_allclose(lo, corners.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(hi, corners.max(axis=0), atol=1e-6)
    assert lo[a_axis] == hi[a_axis] == pytest.approx(prompts.slice_ijk[a_axis])
    np.testing.assert_allclose(_ras(m, prompts.slice_ijk), (0.0, -12.0, 30.0), atol=1e-6)


def test_box_plane_from_a_strictly_thin_side_and_oblique_boxes(scene):
    volume = _volume(scene)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(5.0, -8.0, 20.0)
    roi.SetSize(2.0, 30.0, 20.0)  # resized by hand to 2 mm deep along R: a sagittal box
    assert markups.roi_plane(roi, volume) == "sagittal"
    box = markups.markups_to_prompts(roi, None, volume).box
    assert box[0][0] == box[1][0] == pytest.approx(-5.0)  # i along L: R = 5 mm is i = -5
    rotation = vtk.vtkTransform()
    rotation.RotateZ(45)
    roi.SetAndObserveObjectToNodeMatrix(rotation.GetMatrix())  # a box turned 45 degrees about S
    roi.SetCenter(5.0, -8.0, 20.0)
    with pytest.raises(BridgeError, match="oblique"):
        markups.roi_plane(roi, volume)
    with pytest.raises(BridgeError, match="axial, coronal or sagittal"):
        markups.markups_to_prompts(roi, None, volume, plane="diagonal")


def test_points_carry_the_plane_of_their_view(scene):
    volume = _volume(scene)
    positives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "plus")
    negatives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "minus")
    negatives.SetAttribute(markups.POINT_LABEL_ATTRIBUTE, "negative")
    sagittal = _view(scene, "Sagittal")
    positives.AddControlPoint(vtk.vtkVector3d(-7.0, -10.0, 12.0))
    markups.record_view_plane(positives, sagittal)
    negatives.AddControlPoint(vtk.vtkVector3d(-7.0, -20.0, 16.0))
    markups.record_view_plane(negatives, sagittal)
    prompts = markups.markups_to_prompts(None, (positives, negatives), volume)
    assert prompts.plane == "sagittal" and prompts.box is None and prompts.labels == [1, 0]
    np.testing.assert_allclose(prompts.points, [(7.0, 10.0, 6.0), (7.0, 20.0, 8.0)], atol=1e-6)
    assert prompts.slice_ijk[0] == pytest.approx(7.0)

    # A point on another view is refused with a message (it used to be dropped with a log line).
    positives.AddControlPoint(vtk.vtkVector3d(-3.0, -10.0, 14.0))
    markups.record_view_plane(positives, _view(scene, "Axial"))
    with pytest.raises(BridgeError, match="different views"):
        markups.markups_to_prompts(None, (positives, negatives), volume)
    # ... and so is a point on another sagittal slice.
    positives.RemoveNthControlPoint(1)
    positives.AddControlPoint(vtk.vtkVector3d(-3.0, -11.0, 15.0))
    markups.record_view_plane(positives, sagittal)
    with pytest.raises(BridgeError, match="other sagittal slices"):
        markups.markups_to_prompts(None, (positives, negatives), volume)


def test_unrecorded_points_take_the_plane_they_share_or_the_default(scene):
    volume = _volume(scene)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(-7.0, -10.0, 12.0))
    assert markups.markups_to_prompts(None, points, volume, default_plane="axial").plane == "axial"
    points.AddControlPoint(vtk.vtkVector3d(-9.0, -10.0, 18.0), "-")  # shares A = -10 only: coronal
    prompts = markups.markups_to_prompts(None, points, volume, default_plane="axial")
    assert prompts.plane == "coronal" and prompts.labels == [1, 0]
    assert markups.markups_to_prompts(None, points, volume, plane="coronal").plane == "coronal"


def test_box_and_points_must_agree(scene):
    volume = _volume(scene)
    roi = _two_click_roi(scene, (-30.0, -12.0, 10.0), (30.0, -12.0, 50.0))
    markups.record_view_plane(roi, _view(scene, "Coronal"))
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(-3.0, -12.0, 20.0))
    markups.record_view_plane(points, _view(scene, "Coronal"))
    prompts = markups.markups_to_prompts(roi, points, volume)
    assert prompts.plane == "coronal" and len(prompts.points) == 1 and prompts.box is not None
    markups.record_view_plane(roi, _view(scene, "Axial"))
    with pytest.raises(BridgeError, match="same view"):
        markups.markups_to_prompts(roi, points, volume)
    with pytest.raises(BridgeError, match="box or at least one"):
        markups.markups_to_prompts(None, None, volume)


def test_points_to_voxels_labels_and_transform(scene):
    m = np.eye(4)
    m[:3, :3] = np.diag([-1.0, -2.0, 3.0])
    m[:3, 3] = (10.0, 20.0, 30.0)
    volume = bridge.array_to_volume(scene, np.zeros((10, 10, 10), np.int16), m, name="v")
    positives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "plus")
    positives.AddControlPoint(vtk.vtkVector3d(*_ras(m, (1, 2, 3))), "P-1")
    positives.AddControlPoint(vtk.vtkVector3d(*_ras(m, (4, 5, 6))), "-excluded")  # label says negative
    negatives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "minus")
    negatives.SetAttribute(markups.POINT_LABEL_ATTRIBUTE, "negative")
    negatives.AddControlPoint(vtk.vtkVector3d(*_ras(m, (7, 8, 9))), "N-1")
    points = markups.points_to_voxels((positives, negatives), volume)
    assert [p.label for p in points] == [1, 0, 0]
    np.testing.assert_allclose([p.ijk for p in points], [(1, 2, 3), (4, 5, 6), (7, 8, 9)], atol=1e-6)

    # A linear transform on the point list moves the points in voxel space.
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = np.eye(4)
    shift[:3, 3] = (-1.0, -2.0, 3.0)  # RAS: -1 mm R = +1 voxel i (1 mm along L); -2 mm A = +1 voxel j (2 mm along P)
    transform.SetMatrixTransformToParent(bridge.np_to_vtk(shift))
    negatives.SetAndObserveTransformNodeID(transform.GetID())
    moved = markups.points_to_voxels(negatives, volume)
    np.testing.assert_allclose(moved[0].ijk, (8, 9, 10), atol=1e-6)


def test_markups_on_an_oblique_view_are_refused(scene):
    volume = _volume(scene)
    oblique = _view(scene, "Axial")
    rotation = vtk.vtkTransform()
    rotation.RotateX(40)
    slice_to_ras = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(rotation.GetMatrix(), oblique.GetSliceToRAS(), slice_to_ras)
    oblique.GetSliceToRAS().DeepCopy(slice_to_ras)
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points.AddControlPoint(vtk.vtkVector3d(-7.0, -10.0, 12.0))
    assert markups.record_view_plane(points, oblique) is None
    with pytest.raises(BridgeError, match="oblique"):
        markups.markups_to_prompts(None, points, volume)
    roi = _two_click_roi(scene, (-30.0, -12.0, 10.0), (30.0, -12.0, 50.0))
    markups.record_view_plane(roi, oblique)
    with pytest.raises(BridgeError, match="oblique"):
        markups.markups_to_prompts(roi, None, volume)
