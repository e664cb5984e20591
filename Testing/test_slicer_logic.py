"""TextSegmentLogic on real MRML (slicer-core) with a tiny random-weight model: naming, placement, refine, undo, IO.

No trained model exists in tests, so these check geometry, placement, naming, undo and file IO, not quality.
"""

from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")
torch = pytest.importorskip("torch")

from mrml_helpers import save_and_reload  # noqa: E402

from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.logic import TAG_FOUND, TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
#: keep every voxel that a random model paints, so that masks are non-trivial
OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle):
    """The shared tiny random-weight bundle (Testing/conftest.py), loaded through the catalog/bundle path."""
    return str(tiny_bundle)


@pytest.fixture(scope="module")
def brain_image():
    """Colin27 T1 cut to 24 x 30 x 20 voxels of 4 mm (small and fast), or a synthetic head when absent."""
    if CH2.is_file():
        image = sitk.ReadImage(str(CH2), sitk.sitkFloat32)
        image = sitk.Shrink(image, [4, 4, 4])[10:34, 12:42, 12:32]
    else:
        z, y, x = np.mgrid[:20, :30, :24]
        array = 100.0 * (((x - 12) / 10.0) ** 2 + ((y - 15) / 12.0) ** 2 + ((z - 10) / 8.0) ** 2 < 1) + 5.0 * x
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.SetSpacing((4.0, 4.0, 4.0))
    return image


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture(scope="module")
def worker():
    w = Worker(name="test-logic-worker")
    yield w
    w.shutdown()


@pytest.fixture
def logic(scene, tiny_model, worker):
    return TextSegmentLogic(scene, model=tiny_model, device="cpu", worker=worker)


def _volume_node(scene, image, permute=False):
    """A volume node holding ``image``; ``permute`` stores it with i, j, k along S, R, A (oblique to nothing)."""
    array = sitk.GetArrayFromImage(image)
    m = bridge.ijk_to_ras_from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    if permute:  # same voxels, axes stored in the order (k, i, j): new array[j, i, k] = old[k, j, i]
        array = np.transpose(array, (1, 2, 0)).copy()  # new (k', j', i') = old (j, i, k)
        m = m[:, [2, 0, 1, 3]]
    return bridge.array_to_volume(scene, array, m, name="brain")


def _reference(scene, node, tmp_path):
    """The node's grid as Slicer writes it (independent of the bridge): a SimpleITK image read from NRRD."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)
    path = str(tmp_path / "reference.nrrd")
    storage.SetFileName(path)
    assert storage.WriteData(node)
    return sitk.ReadImage(path)


@pytest.mark.parametrize("permute", [False, True])
def test_segment_names_places_and_saves(scene, logic, brain_image, tmp_path, permute):
    volume = _volume_node(scene, brain_image, permute)
    seg = logic.segment(volume, ["Brain", "left hippocampus"], **OPTIONS)
    segmentation = seg.GetSegmentation()
    assert [segmentation.GetNthSegment(n).GetName() for n in range(2)] == ["Brain", "left hippocampus"]
    brain = segmentation.GetNthSegment(0)
    assert "12738006" in bridge.get_tag(brain, brain.GetTerminologyEntryTagName())
    assert brain.GetColor() == pytest.approx((250 / 255, 250 / 255, 225 / 255))
    reports = logic.results(seg)
    assert [r.prompt for r in reports] == ["Brain", "left hippocampus"]
    assert bridge.get_tag(brain, TAG_FOUND) == ("true" if reports[0].found else "false")

    # Placement: the engine's labelmap, resampled in physical space onto the node's grid as Slicer writes it.
    session = logic._sessions[seg.GetID()]
    result = session.result
    reference = _reference(scene, volume, tmp_path)
    nearest = sitk.sitkNearestNeighbor
    labels = sitk.GetArrayFromImage(sitk.Resample(result.labelmap, reference, sitk.Transform(), nearest))
    masks = [bridge.segment_to_array(seg, session.segment_ids[i], volume) for i in range(2)]
    assert masks[0].any() and not masks[0].all(), "the tiny model should paint part of the volume"
    for i, mask in enumerate(masks):
        np.testing.assert_array_equal(mask, result.mask(i))
        assert np.all(mask[labels == i + 1] == 1)  # the labelmap's label i+1 lies inside segment i
    assert np.all((labels > 0) == (masks[0] | masks[1]).astype(bool))

    # .seg.nrrd written by MRML, read back by MRML and by SimpleITK (physical space) equals what was written.
    path = str(tmp_path / "out.seg.nrrd")
    loaded = save_and_reload(scene, seg, path)
    for i, name in enumerate(["Brain", "left hippocampus"]):
        sid = loaded.GetSegmentation().GetSegmentIdBySegmentName(name)
        np.testing.assert_array_equal(bridge.segment_to_array(loaded, sid, volume), masks[i])
    file_labels = sitk.ReadImage(path)
    if file_labels.GetNumberOfComponentsPerPixel() > 1:  # overlapping segments are stored in several layers
        layer = int(file_labels.GetMetaData("Segment0_Layer"))
        file_labels = sitk.VectorIndexSelectionCast(file_labels, layer)
    brain_value = int(sitk.ReadImage(path).GetMetaData("Segment0_LabelValue"))
    on_grid = sitk.GetArrayFromImage(sitk.Resample(file_labels, reference, sitk.Transform(), nearest))
    np.testing.assert_array_equal(on_grid == brain_value, masks[0].astype(bool))


def test_resegment_replaces_and_undo_restores(scene, logic, brain_image):
    volume = _volume_node(scene, brain_image)
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    first = bridge.segment_to_array(seg, sid, volume)
    logic.segment(volume, ["brain"], seg, **dict(OPTIONS, presence_threshold=1.0))  # drops every slice
    assert seg.GetSegmentation().GetNumberOfSegments() == 1
    assert seg.GetSegmentation().GetSegmentIdBySegmentName("brain") == sid
    assert not bridge.segment_to_array(seg, sid, volume).any()
    assert logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), first)
    assert logic.undo(seg)  # undo the first run: the segment is gone
    assert seg.GetSegmentation().GetNumberOfSegments() == 0
    assert not logic.undo(seg)


def test_refine_with_box_and_points_then_undo(scene, logic, brain_image):
    volume = _volume_node(scene, brain_image)
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    before = bridge.segment_to_array(seg, sid, volume)
    array, m = bridge.volume_to_array(volume)
    k = array.shape[0] // 2
    lo, hi = np.array([3.0, 4.0, k]), np.array([15.0, 20.0, k])
    ras_lo, ras_hi = (m @ np.r_[lo, 1])[:3], (m @ np.r_[hi, 1])[:3]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(*((ras_lo + ras_hi) / 2))
    roi.SetSize(*np.abs(ras_hi - ras_lo))
    index, prompts = logic.refinePrompts(seg, sid, roi)
    assert index == 0 and prompts.plane == "axial" and round(prompts.slice_ijk[2]) == k and prompts.points is None
    np.testing.assert_allclose(prompts.box[0], lo, atol=1e-6)

    logic.refine(seg, sid, roiNode=roi)
    after = bridge.segment_to_array(seg, sid, volume)
    session = logic._sessions[seg.GetID()]
    np.testing.assert_array_equal(after, session.result.mask(0))
    changed = np.flatnonzero((after != before).reshape(after.shape[0], -1).any(axis=1))
    assert set(changed) <= set(range(array.shape[0]))
    untouched = [s for s in range(array.shape[0]) if s not in changed]
    for s in untouched:
        np.testing.assert_array_equal(after[s], before[s])

    import vtk

    points_node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "pts")
    points_node.AddControlPoint(vtk.vtkVector3d(*(m @ np.r_[8.0, 10.0, k - 1, 1])[:3]), "+")
    points_node.AddControlPoint(vtk.vtkVector3d(*(m @ np.r_[2.0, 3.0, k - 1, 1])[:3]), "-")
    index, prompts = logic.refinePrompts(seg, sid, None, points_node)
    assert prompts.plane == "axial" and round(prompts.slice_ijk[2]) == k - 1
    assert prompts.labels == [1, 0] and prompts.box is None
    logic.refine(seg, sid, pointListNode=points_node)
    assert session.result.states[0].refinements == 2

    assert logic.undo(seg) and logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    assert session.result.states[0].refinements == 0
    np.testing.assert_array_equal(session.result.mask(0), before)


def test_refine_needs_a_textsegment_segment(scene, logic, brain_image):
    volume = _volume_node(scene, brain_image)
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "manual")
    with pytest.raises(bridge.BridgeError, match="Segment first"):
        logic.refine(seg, "x", roiNode=None)
    seg = logic.segment(volume, "brain\n\n  skull \n", **OPTIONS)  # one prompt per line, blanks ignored
    names = [
        seg.GetSegmentation().GetNthSegment(n).GetName() for n in range(seg.GetSegmentation().GetNumberOfSegments())
    ]
    assert names == ["brain", "skull"]
    with pytest.raises(bridge.BridgeError, match="box or at least one"):
        logic.refine(seg, seg.GetSegmentation().GetNthSegmentID(0))


def test_segment_files_batch(scene, logic, brain_image, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    sitk.WriteImage(brain_image, str(folder / "case01.nii.gz"))
    sitk.WriteImage(sitk.Flip(brain_image, [True, False, False]), str(folder / "case02.nrrd"))
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    progress = []
    out = tmp_path / "out"
    written = logic.segmentFiles(folder, ["brain"], out, progress=lambda f, m: progress.append(f), **OPTIONS)
    assert [p.name for p in written] == ["case01.seg.nrrd", "case02.seg.nrrd"]
    assert progress[-1] == 1.0
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(str(written[0]))
    assert reader.ReadData(loaded)
    segment = loaded.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "brain"
    assert "12738006" in bridge.get_tag(segment, segment.GetTerminologyEntryTagName())
    assert bridge.get_tag(segment, TAG_FOUND) in ("true", "false")
    assert segment.GetColor() == pytest.approx((250 / 255, 250 / 255, 225 / 255), abs=1e-5)
    image = sitk.ReadImage(str(written[0]))
    np.testing.assert_allclose(image.GetOrigin(), brain_image.GetOrigin(), atol=1e-4)


def test_cancel_within_a_second_leaves_scene_unchanged(scene, logic):
    import time

    array = (np.random.default_rng(0).random((400, 40, 40)) * 100).astype(np.float32)
    volume = bridge.array_to_volume(scene, array, np.diag([2.0, 2.0, 1.0, 1.0]), name="long")
    nodes_before = scene.GetNumberOfNodes()
    job = logic.segmentAsync(volume, ["liver"], use_cache=False)
    # Cancel is checked between batches: on an idle machine that is well under a second; on a busy one (a loaded
    # CI runner) allow twice the longest gap seen between two progress reports.
    deadline, changes, last = time.monotonic() + 60, [], None
    while len(changes) < 4 and not job.done and time.monotonic() < deadline:
        fraction = job.status().fraction
        if fraction != last:
            changes.append(time.monotonic())
            last = fraction
        time.sleep(0.005)
    assert not job.done, "the job ended before it could be cancelled"
    gap = max(b - a for a, b in zip(changes[1:], changes[2:]))
    limit = max(1.0, 2.0 * gap)
    t0 = time.monotonic()
    job.cancel()
    assert job.wait(limit), f"cancel took more than {limit:.2f} s"
    assert time.monotonic() - t0 < limit and job.state == "cancelled"
    assert scene.GetNumberOfNodes() == nodes_before
    assert logic.worker.alive


def test_errors_leave_the_scene_as_it_was(scene, logic, brain_image, monkeypatch):
    volume = _volume_node(scene, brain_image)
    job = logic.segmentAsync(volume, ["brain"], no_such_option=1)
    assert job.wait(30) and job.state == "failed" and "no_such_option" in str(job.error)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0

    seg = logic.segment(volume, ["brain", "skull"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    before = bridge.segment_to_array(seg, sid, volume)
    result = logic._sessions[seg.GetID()].result
    calls = []
    original = bridge.write_segment

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(bridge, "write_segment", failing)
    result.states[0].mask[:] = True  # a different "brain" that must not stay in the scene
    result._invalidate()
    with pytest.raises(RuntimeError, match="disk full"):
        logic.applySegmentation(volume, result, seg)
    assert seg.GetSegmentation().GetNumberOfSegments() == 2
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    count = scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()
    calls.clear()
    with pytest.raises(RuntimeError, match="disk full"):
        logic.applySegmentation(volume, result)  # a new node is removed again
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == count


def test_undo_history_is_bounded(scene, logic, brain_image):
    from TextSegmentLib.slicer.logic import MAX_UNDO

    volume = _volume_node(scene, brain_image)
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    result = logic._sessions[seg.GetID()].result
    for _ in range(MAX_UNDO + 3):
        logic.applySegmentation(volume, result, seg)
    session = logic._sessions[seg.GetID()]
    assert len(session.undo) == MAX_UNDO
    assert all(not step.session.undo for step in session.undo if step.session is not None)
    for _ in range(MAX_UNDO):
        assert logic.undo(seg)
    assert not logic.canUndo(seg) and seg.GetSegmentation().GetNumberOfSegments() == 1
    logic.forget(seg)
    assert seg.GetID() not in logic._sessions


def test_box_on_a_permuted_volume_uses_the_model_slice_axis(scene, logic, brain_image):
    from TextSegmentLib.engine.volume import AXIS_NORMAL

    volume = _volume_node(scene, brain_image, permute=True)  # axial slices are along index axis i here
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    prepared = logic._sessions[seg.GetID()].result.volume
    axis = prepared.reorientation.permutation[AXIS_NORMAL[prepared.axis]]
    assert axis == 0
    dims = np.array(volume.GetImageData().GetDimensions(), float)
    lo, hi = dims * 0.2, dims * 0.8
    lo[axis] = hi[axis] = dims[axis] // 2
    _, m = bridge.volume_to_array(volume, copy=False)
    ras_lo, ras_hi = (m @ np.r_[lo, 1])[:3], (m @ np.r_[hi, 1])[:3]
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.SetCenter(*((ras_lo + ras_hi) / 2))
    roi.SetSize(*np.abs(ras_hi - ras_lo))
    _, prompts = logic.refinePrompts(seg, sid, roi)
    assert prompts.plane == "axial" and round(prompts.slice_ijk[axis]) == dims[axis] // 2
    before = bridge.segment_to_array(seg, sid, volume)
    logic.refine(seg, sid, roiNode=roi)
    session = logic._sessions[seg.GetID()]
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), session.result.mask(0))
    assert logic.undo(seg)
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)

    # A box drawn flat on another view (here: flat along k, i.e. A) is a coronal box.
    flat = dims * 0.5
    ras_a, ras_b = (m @ np.r_[2.0, 2.0, flat[2], 1])[:3], (m @ np.r_[dims[0] - 3, dims[1] - 3, flat[2], 1])[:3]
    roi.SetCenter(*((ras_a + ras_b) / 2))
    roi.SetSize(*np.abs(ras_b - ras_a))
    with pytest.raises(bridge.BridgeError, match="cannot refine on the coronal plane.*axial \\(red\\) view"):
        logic.refinePrompts(seg, sid, roi)


def test_precompute_while_the_user_types_then_segment(scene, logic):
    """The module encodes the selected volume on the worker before the first prompt: the prompt then encodes nothing
    more, and a second precompute has nothing left to do."""
    array = (np.random.default_rng(7).random((30, 36, 28)) * 100).astype(np.float32)
    volume = bridge.array_to_volume(scene, array, np.diag([3.0, 3.0, 3.0, 1.0]), name="typing")
    job = logic.precomputeAsync(volume)
    assert job.description == "preparing typing for prompts"
    assert job.get(60) == {"axial": 30}
    assert logic.precomputeAsync(volume).get(60) == {"axial": 0}
    assert logic.precomputeAsync(volume, slice_axis="coronal").get(60) == {"coronal": 36}
    hits = logic.worker.run(lambda job: logic.segmenter().cache.hits)
    seg = logic.segment(volume, ["brain"], **OPTIONS)
    assert logic.worker.run(lambda job: logic.segmenter().cache.hits) > hits
    assert seg.GetSegmentation().GetSegmentIdBySegmentName("brain")


def test_a_prompt_cancels_the_precompute_and_loses_nothing(scene, logic):
    """Segmenting cancels a running precompute (as the module does): the prompt runs next, and the slices encoded
    before the cancel stay encoded."""
    import time

    array = (np.random.default_rng(8).random((400, 40, 40)) * 100).astype(np.float32)
    volume = bridge.array_to_volume(scene, array, np.diag([2.0, 2.0, 1.0, 1.0]), name="long")
    job = logic.precomputeAsync(volume)
    deadline = time.monotonic() + 60
    while job.status().fraction < 0.2 and not job.done and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not job.done, "the precompute ended before it could be cancelled"
    job.cancel()
    seg = logic.segment(volume, ["brain"], slice_axis="coronal", **OPTIONS)  # leaves the axial slices alone
    assert job.state == "cancelled" and seg.GetSegmentation().GetNumberOfSegments() == 1
    left = logic.precomputeAsync(volume).get(60)["axial"]
    assert 0 < left <= 400 - 80
