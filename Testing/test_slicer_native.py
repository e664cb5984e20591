"""Slicer-native output of one segment call with the embedded default model on a real brain MRI (slicer-core MRML).

Four prompts on both hemispheres: segments that do not overlap share a labelmap layer (the saved .seg.nrrd has fewer
layers than segments), the segmentation sits under the volume's study, and each segment carries its SNOMED CT code.
"""

from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
sitk = pytest.importorskip("SimpleITK")
torch = pytest.importorskip("torch")

from mrml_helpers import save_and_reload  # noqa: E402

from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
PROMPTS = ["left hippocampus", "right hippocampus", "left caudate nucleus", "right caudate nucleus"]


@pytest.fixture(scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier on a shared two-core machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(not CH2.is_file(), reason="the Colin27 T1 comes with Debian's mricron-data (scripts/setup.sh)")
def test_four_prompts_share_layers_sit_in_the_study_and_are_coded(tmp_path, single_thread):
    scene = slicer.vtkMRMLScene()
    image = sitk.Shrink(sitk.ReadImage(str(CH2), sitk.sitkFloat32), [2, 2, 2])
    ijk_to_ras = bridge.ijk_to_ras_from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    volume = bridge.array_to_volume(scene, sitk.GetArrayFromImage(image), ijk_to_ras, name="colin27")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Colin"), "MR T1")
    hierarchy.CreateItem(study, volume)
    worker = Worker(name="test-native-worker")
    try:
        logic = TextSegmentLogic(scene, model="default", device="cpu", worker=worker)
        seg = logic.segment(volume, PROMPTS, slice_stride=4)
    finally:
        worker.shutdown()

    segmentation = seg.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]
    assert [segmentation.GetSegment(sid).GetName() for sid in ids] == PROMPTS
    assert all(r.found for r in logic.results(seg)), [(r.prompt, r.found) for r in logic.results(seg)]
    masks = {sid: bridge.segment_to_array(seg, sid, volume).astype(bool) for sid in ids}
    assert not (masks[ids[0]] & masks[ids[1]]).any() and not (masks[ids[2]] & masks[ids[3]]).any()  # no L/R overlap
    layers = segmentation.GetNumberOfLayers()
    assert layers < len(ids), f"{layers} labelmap layers for {len(ids)} segments"
    for a in ids:  # segments of one layer never overlap; overlapping ones are in different layers
        for b in ids:
            if a < b and segmentation.GetLayerIndex(a) == segmentation.GetLayerIndex(b):
                assert not (masks[a] & masks[b]).any(), (a, b)
    for sid, mask in masks.items():
        np.testing.assert_array_equal(mask, logic._sessions[seg.GetID()].result.mask(ids.index(sid)).astype(bool))

    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg)) == study
    hippocampus = segmentation.GetSegment(ids[0])
    entry = bridge.get_tag(hippocampus, hippocampus.GetTerminologyEntryTagName()).split("~")
    assert entry[0] == "Segmentation category and type - DICOM master list"
    assert entry[2] == "SCT^5366008^Hippocampus" and entry[3] == "SCT^7771000^Left"

    loaded = save_and_reload(scene, seg, str(tmp_path / "colin.seg.nrrd"))
    assert loaded.GetSegmentation().GetNumberOfLayers() == layers
    for sid in ids:
        reloaded = loaded.GetSegmentation().GetSegmentIdBySegmentName(segmentation.GetSegment(sid).GetName())
        np.testing.assert_array_equal(bridge.segment_to_array(loaded, reloaded, volume).astype(bool), masks[sid])
