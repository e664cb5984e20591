"""MRML bridge under slicer-core: geometry round trips, segments in and out, .seg.nrrd IO, markups -> voxels."""

import math

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")

from mrml_helpers import save_and_reload  # noqa: E402

from TextSegmentLib.slicer import bridge  # noqa: E402


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


def test_non_overlapping_segments_share_a_layer_and_survive_replace_and_save(scene, tmp_path):
    volume = bridge.array_to_volume(scene, np.zeros((10, 20, 30), np.int16), np.diag([-1.0, -1, 2, 1]), name="v")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "s")
    bridge.prepare_segmentation_node(seg, volume)
    _, m = bridge.volume_to_array(volume)
    masks = []
    for n in range(4):  # four boxes side by side
        a = np.zeros((10, 20, 30), np.uint8)
        a[2:8, 2:10, n * 7 : n * 7 + 5] = 1
        masks.append(a)
    overlapping = np.zeros((10, 20, 30), np.uint8)
    overlapping[3:6, 4:8, 0:12] = 1  # overlaps the first two
    masks.append(overlapping)
    ids = [bridge.write_segment(seg, a, m, f"s{n}", volume_node=volume)[0] for n, a in enumerate(masks)]
    assert seg.GetSegmentation().GetNumberOfLayers() == 5  # one per write_segment
    assert bridge.share_layers(seg) == 2
    segmentation = seg.GetSegmentation()
    assert len({segmentation.GetLayerIndex(sid) for sid in ids[:4]}) == 1
    assert segmentation.GetLayerIndex(ids[4]) != segmentation.GetLayerIndex(ids[0])
    for sid, a in zip(ids, masks):
        np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), a)

    # Replacing a segment of a shared layer clears its old voxels there, keeps its neighbours, and undo restores it.
    new = np.zeros_like(masks[1])
    new[1:3, 12:18, 8:12] = 1
    _, previous = bridge.write_segment(seg, new, m, "s1", volume_node=volume, segment_id=ids[1])
    bridge.share_layers(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, ids[1], volume), new)
    for n in (0, 2, 3, 4):
        np.testing.assert_array_equal(bridge.segment_to_array(seg, ids[n], volume), masks[n])
    bridge.restore_segment(seg, ids[1], previous)
    assert bridge.share_layers(seg) == 2
    for sid, a in zip(ids, masks):
        np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), a)

    loaded = save_and_reload(scene, seg, str(tmp_path / "shared.seg.nrrd"))
    assert loaded.GetSegmentation().GetNumberOfLayers() == 2
    for n, a in enumerate(masks):
        sid = loaded.GetSegmentation().GetSegmentIdBySegmentName(f"s{n}")
        np.testing.assert_array_equal(bridge.segment_to_array(loaded, sid, volume), a)


def test_segmentation_goes_under_the_volume_study(scene):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    volume = bridge.array_to_volume(scene, np.zeros((4, 5, 6), np.int16), name="ct")
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient 1")
    study = hierarchy.CreateStudyItem(patient, "CT study")
    hierarchy.CreateItem(study, volume)  # what DICOM loading does
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    assert bridge.place_with_volume(seg, volume)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg)) == study
    assert hierarchy.GetItemLevel(hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg))) == "Study"
    loose = bridge.array_to_volume(scene, np.zeros((4, 5, 6), np.int16), name="loose")  # no hierarchy item
    assert not bridge.place_with_volume(scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "other"), loose)
