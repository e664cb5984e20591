"""DICOM SEG output (``.dcm``): one binary segment per found prompt, with the terminology codes, colours and
laterality of the other writers; the source series referenced for DICOM input (a real brain MRI written as a DICOM
series), new UIDs and a note for NIfTI input; read back by pydicom and highdicom to the same masks; atomic."""

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from engine_volumes import brain_crop
from fuzz_helpers import cli, one_torch_thread, small_volume, temporary_files

from TextSegmentLib.engine import Segmenter
from TextSegmentLib.engine.dicomseg import DicomSegError
from TextSegmentLib.engine.writers import save_result

hd = pytest.importorskip("highdicom")

ALL = {"presence_threshold": 0.0, "mask_threshold": 0.0, "min_component_ml": 0.0}
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
STUDY, SERIES, FRAME = (
    "1.2.826.0.1.3680043.2.1125.7.1",
    "1.2.826.0.1.3680043.2.1125.7.2",
    "1.2.826.0.1.3680043.2.1125.7.3",
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def write_series(image: sitk.Image, folder: Path) -> Path:
    """``image`` (3D, any direction) as an MR DICOM series, one file per slice, with its full geometry."""
    folder.mkdir(parents=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4],
                                                   direction[7]))  # fmt: skip
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in [
            ("0008|0060", "MR"),
            ("0008|0016", "1.2.840.10008.5.1.4.1.1.4"),
            ("0008|0018", f"1.2.826.0.1.3680043.2.1125.7.4.{k + 1}"),
            ("0010|0010", "Colin^Twentyseven"),
            ("0010|0020", "CH2"),
            ("0020|000d", STUDY),
            ("0020|000e", SERIES),
            ("0020|0052", FRAME),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in position)),
            ("0020|0037", orientation),
            ("0020|0013", str(k + 1)),
            ("0018|0050", f"{image.GetSpacing()[2]:.6f}"),
        ]:
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


def _hand_masks(res) -> None:
    """'brain' everywhere, 'left hippocampus' a cube inside it (overlapping), the third prompt not found."""
    for state in res.states:
        state.mask[:] = False
    res.states[0].mask[:] = True
    res.states[1].mask[2:5, 3:6, 3:6] = True
    res._invalidate()


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    return Segmenter(str(tiny_bundle), device="cpu")


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory) -> Path:
    return write_series(brain_crop((20, 24, 8)), tmp_path_factory.mktemp("dicom") / "series")


def _read_back(path: Path):
    """pydicom and highdicom both read it: (pydicom dataset, highdicom Segmentation, referenced instance UIDs)."""
    raw = pydicom.dcmread(str(path))
    assert raw.SOPClassUID == SEG_STORAGE and raw.SegmentationType == "BINARY"
    seg = hd.seg.segread(str(path))
    uids = [str(s.ReferencedSOPInstanceUID) for s in raw.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    return raw, seg, uids


def test_dicom_input_references_its_series_and_round_trips(segmenter, dicom_series, tmp_path):
    res = segmenter.segment(str(dicom_series), ["brain", "left hippocampus", "liver"], **ALL)
    _hand_masks(res)
    out = tmp_path / "seg.dcm"
    report = save_result(res, out)

    raw, seg, uids = _read_back(out)
    # the input series is referenced: same study, frame of reference, and every source instance
    assert raw.StudyInstanceUID == STUDY and raw.FrameOfReferenceUID == FRAME
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES and raw.SeriesInstanceUID != SERIES
    assert sorted(uids) == sorted(f"1.2.826.0.1.3680043.2.1125.7.4.{k + 1}" for k in range(8))
    assert raw.PatientID == "CH2"
    assert report["dicom"]["references_input"] is True and report["dicom"]["note"] is None
    assert report["dicom"]["referenced_series_instance_uid"] == SERIES
    # one segment per found prompt: 'liver' (not found) has none, and no empty segment is written
    assert seg.number_of_segments == 2
    assert [seg.get_segment_description(n).SegmentLabel for n in (1, 2)] == ["brain", "left hippocampus"]
    assert [s["dicom_segment_number"] for s in report["segments"]] == [1, 2, None]
    # masks round-trip slice by slice (files matched by position): overlapping segments both kept whole
    slice_of = {}
    for f in dicom_series.glob("*.dcm"):
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        point = [float(v) for v in ds.ImagePositionPatient]
        slice_of[res.volume.image.TransformPhysicalPointToIndex(point)[2]] = str(ds.SOPInstanceUID)
    expected_order = [slice_of[k] for k in range(8)]
    pixels = seg.get_pixels_by_source_instance(expected_order, segment_numbers=[1, 2])
    assert np.array_equal(pixels[..., 0] > 0, res.mask(0)) and np.array_equal(pixels[..., 1] > 0, res.mask(1))
    assert (res.mask(0) & res.mask(1)).sum() == 27  # they overlap and both are whole


def test_codes_colour_and_laterality_are_those_of_the_terminology(segmenter, dicom_series, tmp_path):
    from TextSegmentLib.prompts import match_prompt

    res = segmenter.segment(str(dicom_series), ["brain", "left hippocampus", "liver"], **ALL)
    _hand_masks(res)
    save_result(res, tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    hippo = seg.get_segment_description(2)
    entry = match_prompt("left hippocampus").entry.split("~")
    kind = hippo.SegmentedPropertyTypeCodeSequence[0]
    assert "^".join([kind.CodingSchemeDesignator, kind.CodeValue, kind.CodeMeaning]) == entry[2]
    modifier = kind.SegmentedPropertyTypeModifierCodeSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("7771000", "Left")
    category = hippo.SegmentedPropertyCategoryCodeSequence[0]
    assert "^".join([category.CodingSchemeDesignator, category.CodeValue, category.CodeMeaning]) == entry[1]
    rgb = hd.color.CIELabColor.from_dicom_value(hippo.RecommendedDisplayCIELabValue).to_rgb()
    assert np.allclose(np.array(rgb) / 255.0, match_prompt("left hippocampus").color, atol=0.02)
    assert hippo.SegmentAlgorithmType == "AUTOMATIC" and hippo.SegmentAlgorithmName == "TextSegment"
    assert not hasattr(seg.get_segment_description(1).SegmentedPropertyTypeCodeSequence[0],
                       "SegmentedPropertyTypeModifierCodeSequence")  # fmt: skip


def test_nifti_input_gets_new_uids_and_a_note(segmenter, tmp_path):
    scan = small_volume(tmp_path / "in.nii.gz")
    res = segmenter.segment(str(scan), ["brain", "left hippocampus", "liver"], **ALL)
    _hand_masks(res)
    report = save_result(res, tmp_path / "seg.dcm")
    raw = pydicom.dcmread(str(tmp_path / "seg.dcm"))
    assert "not DICOM" in report["dicom"]["note"] and report["dicom"]["references_input"] is False
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == report["dicom"]["referenced_series_instance_uid"]
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    # the segmentation has the input's geometry: highdicom's own volume (it stacks the slices from the last one,
    # the input's k axis reversed) holds the masks at the input's voxel positions
    volume = seg.get_volume(segment_numbers=[1, 2], combine_segments=False)
    image = res.volume.image
    last = image.GetSize()[2] - 1
    assert np.allclose(volume.spacing, image.GetSpacing()[::-1], atol=1e-4)  # highdicom: (k, j, i) spacing
    assert np.allclose(volume.position, image.TransformIndexToPhysicalPoint((0, 0, last)), atol=1e-4)
    assert np.array_equal(volume.array[::-1, ..., 0] > 0, res.mask(0))
    assert np.array_equal(volume.array[::-1, ..., 1] > 0, res.mask(1))
    written = json.loads((tmp_path / "seg.dcm.json").read_text())
    assert written["dicom"]["segments"] == 2 and [s["dicom_segment_number"] for s in written["segments"]] == [
        1,
        2,
        None,
    ]


def test_nothing_found_writes_nothing_and_says_why(segmenter, tmp_path):
    scan = small_volume(tmp_path / "in.nii.gz")
    res = segmenter.segment(str(scan), ["liver"], **ALL)
    res.states[0].mask[:] = False
    res._invalidate()
    with pytest.raises(DicomSegError, match="at least one segment"):
        save_result(res, tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "seg.dcm.json").exists()
    assert temporary_files(tmp_path) == []


def test_atomic_no_overwrite_and_a_bad_file_never_replaces(segmenter, tmp_path, monkeypatch):
    from TextSegmentLib.engine import dicomseg
    from TextSegmentLib.engine.writers import WriteFailed

    scan = small_volume(tmp_path / "in.nii.gz")
    res = segmenter.segment(str(scan), ["brain", "left hippocampus"], **ALL)
    _hand_masks(res)
    out = tmp_path / "seg.dcm"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        save_result(res, out)
    build = dicomseg.build_dicom_seg

    def wrong(result, sources=None):  # a file whose pixels differ from the masks must not replace anything
        seg = build(result, sources)
        seg.masks[1] = ~seg.masks[1]
        return seg

    monkeypatch.setattr(dicomseg, "build_dicom_seg", wrong)
    with pytest.raises(WriteFailed, match="does not read back"):
        save_result(res, out, overwrite=True)
    assert out.read_bytes() == b"old" and temporary_files(tmp_path) == []


def test_cli_writes_a_dicom_seg_from_a_dicom_folder(present_bundle, dicom_series, tmp_path, capsys):
    out = tmp_path / "out" / "seg.dcm"
    args = ["--prompt", "brain", "--prompt", "left hippocampus", "--output", str(out), "--model", str(present_bundle)]
    code, _, err = cli(capsys, "segment", str(dicom_series), *args, "--device", "cpu", "--views", "axial")
    assert code == 0, err
    raw = pydicom.dcmread(str(out))
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES
    report = json.loads(Path(str(out) + ".json").read_text())
    found = [s for s in report["segments"] if s["found"]]
    assert len(raw.SegmentSequence) == len(found) >= 1
    assert [s.SegmentLabel for s in raw.SegmentSequence] == [s["prompt"] for s in found]


def test_console_segment_files_writes_dicom_seg(present_bundle, dicom_series, tmp_path):
    slicer = pytest.importorskip("slicer")
    from TextSegmentLib.slicer.logic import TextSegmentLogic
    from TextSegmentLib.slicer.worker import Worker

    worker = Worker(name="test-dicom-seg-worker")
    try:
        logic = TextSegmentLogic(slicer.vtkMRMLScene(), model=str(present_bundle), device="cpu", worker=worker)
        written = logic.segmentFiles(dicom_series, ["brain"], tmp_path / "out", suffix=".dcm", views=("axial",))
    finally:
        worker.shutdown()
    assert [p.suffix for p in written] == [".dcm"]
    raw = pydicom.dcmread(str(written[0]))
    assert (
        raw.ReferencedSeriesSequence[0].SeriesInstanceUID == SERIES and raw.SegmentSequence[0].SegmentLabel == "brain"
    )


def test_a_batch_skips_a_complete_dicom_seg_and_refuses_a_foreign_dcm(present_bundle, dicom_series, tmp_path, capsys):
    out = tmp_path / "seg.dcm"
    args = ["segment", str(dicom_series), "--prompt", "brain", "--output", str(out), "--model", str(present_bundle)]
    args += ["--device", "cpu", "--views", "axial"]
    assert cli(capsys, *args)[0] == 0
    before = out.read_bytes()
    code, text, err = cli(capsys, *args)  # complete: skipped, kept as it is
    assert code == 0 and out.read_bytes() == before, text + err
    out.write_bytes(b"not dicom")
    code, text, err = cli(capsys, *args)  # a file that is not a DICOM SEG is reported, never silently kept
    assert code != 0 and "not a readable DICOM file" in text + err
