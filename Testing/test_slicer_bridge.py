"""MRML bridge under slicer-core: geometry round trips, segments in and out, .seg.nrrd IO, markups -> voxels."""

import math

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from mrml_helpers import save_and_reload  # noqa: E402

from TextSegmentLib import slicer_bridge as bridge  # noqa: E402


def _rotation(axis, degrees):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _ijk_to_ras(directions, spacing=(0.8, 1.1, 2.5), origin=(12.0, -30.0, 45.0)):
    m = np.eye(4)
    m[:3, :3] = np.asarray(directions, float) @ np.diag(spacing)
    m[:3, 3] = origin
    return m


DIRECTIONS = {
    "ras": np.eye(3),
    "lps": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),  # sagittal-like
    "oblique": _rotation(2, 20) @ _rotation(0, 15) @ np.diag([-1.0, 1.0, 1.0]),
}


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def _ramp(shape=(6, 7, 8)):
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape)


@pytest.mark.parametrize("kind", sorted(DIRECTIONS))
def test_volume_round_trip_and_lps(scene, kind, tmp_path):
    m = _ijk_to_ras(DIRECTIONS[kind])
    array = _ramp()
    node = bridge.array_to_volume(scene, array, m, name=kind)
    back, m_back = bridge.volume_to_array(node)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(m_back, m, atol=1e-9)

    spacing, origin, direction = bridge.lps_geometry(m_back)
    np.testing.assert_allclose(bridge.ijk_to_ras_from_lps(spacing, origin, direction), m, atol=1e-9)
    image = sitk.GetImageFromArray(back)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    for ijk in [(0, 0, 0), (7, 0, 0), (3, 6, 5)]:
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk]))
        ras = (m @ np.r_[ijk, 1.0])[:3]
        np.testing.assert_allclose(lps, bridge.RAS_LPS @ ras, atol=1e-6)
        assert image[ijk] == array[ijk[2], ijk[1], ijk[0]]

    # Independent check: Slicer's own NRRD writer, read back with SimpleITK, gives the same LPS geometry.
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    path = str(tmp_path / f"{kind}.nrrd")
    storage.SetFileName(path)
    assert storage.WriteData(node)
    written = sitk.ReadImage(path)
    np.testing.assert_allclose(written.GetOrigin(), origin, atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), direction, atol=1e-4)
    np.testing.assert_allclose(written.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), array)


def test_multicomponent_and_nonlinear_transform_refused(scene):
    node = bridge.array_to_volume(scene, _ramp(), name="v")
    grid = slicer.vtkMRMLGridTransformNode()
    scene.AddNode(grid)
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(bridge.BridgeError, match="harden"):
        bridge.volume_to_array(node)


def test_write_read_replace_restore_segment(scene, tmp_path):
    m = _ijk_to_ras(DIRECTIONS["oblique"])
    volume = bridge.array_to_volume(scene, _ramp(), m, name="v")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    bridge.prepare_segmentation_node(seg, volume)
    a = np.zeros((6, 7, 8), np.uint8)
    a[1:4, 2:5, 3:7] = 1
    b = np.zeros_like(a)
    b[4:6, 0:3, 0:2] = 1
    id_a, prev = bridge.write_segment(seg, a, m, "liver", color=(1, 0, 0), terminology="x~y", volume_node=volume)
    assert prev is None
    id_b, _ = bridge.write_segment(seg, b, m, "spleen", volume_node=volume)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, id_a, volume), a)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, id_b, volume), b)

    # Replace "liver": same id and position, old one returned for undo, tags kept.
    c = np.zeros_like(a)
    c[0:2, 0:2, 0:2] = 1
    id_c, previous = bridge.write_segment(seg, c, m, "liver", volume_node=volume)
    segmentation = seg.GetSegmentation()
    assert id_c == id_a and segmentation.GetSegmentIndex(id_a) == 0 and segmentation.GetNumberOfSegments() == 2
    assert segmentation.GetSegment(id_a).GetColor() == (1.0, 0.0, 0.0)
    tag = segmentation.GetSegment(id_a).GetTerminologyEntryTagName()
    assert bridge.get_tag(segmentation.GetSegment(id_a), tag) == "x~y"
    np.testing.assert_array_equal(bridge.segment_to_array(seg, id_a, volume), c)
    bridge.restore_segment(seg, id_a, previous)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, id_a, volume), a)
    assert segmentation.GetSegmentIndex(id_a) == 0

    # .seg.nrrd round trip (segments share one layer after reading; each must still come back exactly).
    path = str(tmp_path / "out.seg.nrrd")
    loaded = save_and_reload(scene, seg, path)
    seg2 = loaded.GetSegmentation()
    names = [seg2.GetNthSegment(n).GetName() for n in range(seg2.GetNumberOfSegments())]
    assert names == ["liver", "spleen"]
    np.testing.assert_array_equal(bridge.segment_to_array(loaded, seg2.GetSegmentIdBySegmentName("liver"), volume), a)
    np.testing.assert_array_equal(bridge.segment_to_array(loaded, seg2.GetSegmentIdBySegmentName("spleen"), volume), b)


def test_segment_follows_linear_transform(scene):
    m = _ijk_to_ras(DIRECTIONS["lps"])
    volume = bridge.array_to_volume(scene, _ramp(), m, name="v")
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = np.eye(4)
    shift[:3, 3] = (5.0, -3.0, 2.0)
    transform.SetMatrixTransformToParent(bridge.np_to_vtk(shift))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    bridge.prepare_segmentation_node(seg, volume)
    assert seg.GetParentTransformNode() is transform
    a = np.zeros((6, 7, 8), np.uint8)
    a[2:4, 1:3, 5:8] = 1
    sid, _ = bridge.write_segment(seg, a, m, "x", volume_node=volume)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), a)


def _roi(scene, center, size, parent=None):
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(*center)
    roi.SetSize(*size)
    if parent is not None:
        roi.SetAndObserveTransformNodeID(parent.GetID())
    return roi


@pytest.mark.parametrize("kind", ["ras", "lps", "permuted"])
def test_roi_to_voxel_box(scene, kind):
    m = _ijk_to_ras(DIRECTIONS[kind], spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    volume = bridge.array_to_volume(scene, np.zeros((10, 20, 30), np.int16), m, name="v")
    lo_ijk, hi_ijk, k = np.array([4.0, 5.0, 0.0]), np.array([12.0, 15.0, 0.0]), 7
    lo_ijk[2] = hi_ijk[2] = k
    ras_lo, ras_hi = (m @ np.r_[lo_ijk, 1])[:3], (m @ np.r_[hi_ijk, 1])[:3]
    center = (ras_lo + ras_hi) / 2
    size = np.abs(ras_hi - ras_lo)
    box = bridge.roi_to_voxel_box(_roi(scene, center, size), volume)
    assert box.axis == 2 and box.slice_index == k
    np.testing.assert_allclose(box.lo, lo_ijk, atol=1e-6)
    np.testing.assert_allclose(box.hi, hi_ijk, atol=1e-6)


def test_points_to_voxels_labels_and_transform(scene):
    m = _ijk_to_ras(DIRECTIONS["lps"], spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0))
    volume = bridge.array_to_volume(scene, np.zeros((10, 10, 10), np.int16), m, name="v")
    import vtk

    def ras(ijk):
        return vtk.vtkVector3d(*(m @ np.r_[ijk, 1.0])[:3])

    positives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "plus")
    positives.AddControlPoint(ras((1, 2, 3)), "P-1")
    positives.AddControlPoint(ras((4, 5, 6)), "-excluded")  # label says negative
    negatives = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "minus")
    negatives.SetAttribute(bridge.POINT_LABEL_ATTRIBUTE, "negative")
    negatives.AddControlPoint(ras((7, 8, 9)), "N-1")
    points = bridge.points_to_voxels((positives, negatives), volume)
    assert [p.label for p in points] == [1, 0, 0]
    np.testing.assert_allclose([p.ijk for p in points], [(1, 2, 3), (4, 5, 6), (7, 8, 9)], atol=1e-6)

    # A linear transform on the point list moves the points in voxel space.
    transform = slicer.vtkMRMLLinearTransformNode()
    scene.AddNode(transform)
    shift = np.eye(4)
    shift[:3, 3] = (-1.0, -2.0, 3.0)  # RAS: -1 mm R = +1 voxel i (LPS volume, 1 mm); -2 mm A = +1 voxel j
    transform.SetMatrixTransformToParent(bridge.np_to_vtk(shift))
    negatives.SetAndObserveTransformNodeID(transform.GetID())
    moved = bridge.points_to_voxels(negatives, volume)
    np.testing.assert_allclose(moved[0].ijk, (8, 9, 10), atol=1e-6)
