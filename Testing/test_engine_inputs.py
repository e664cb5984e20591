"""Bad inputs are refused with clear messages; good ones in every supported form are read."""

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from TextSegmentLib.checkpoint import BundleError
from TextSegmentLib.engine import InputError, Segmenter, VolumeInput, check_prompts, load_input
from TextSegmentLib.prompts import match_prompt


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    return Segmenter(str(tiny_bundle), device="cpu")


def write_dicom_series(folder: Path, array: np.ndarray, modality: str = "CT") -> None:
    """A 3D int16 array as a DICOM series (one file per slice) with positions along z."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        sl = sitk.GetImageFromArray(array[k])
        sl.SetSpacing((0.8, 0.8))
        for tag, value in [
            ("0008|0060", modality),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.2"),
            ("0020|0032", f"-10\\-10\\{2.5 * k}"),
            ("0020|0037", "1\\0\\0\\0\\1\\0"),
            ("0020|0013", str(k + 1)),
            ("0018|0050", "2.5"),
        ]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder_and_modality(segmenter, tmp_path):
    arr = np.full((6, 32, 32), -1000, np.int16)
    arr[:, 8:24, 8:24] = 40
    write_dicom_series(tmp_path / "series", arr)
    image, meta, _ = load_input(tmp_path / "series")
    assert image.GetSize() == (32, 32, 6) and image.GetSpacing()[2] == pytest.approx(2.5)
    res = segmenter.segment(str(tmp_path / "series"), ["liver"])
    assert res.to_dict()["modality"] == "CT" and res.labelmap.GetSize() == (32, 32, 6)


def test_single_dicom_slice_is_2d(segmenter):
    import pydicom.data

    with pytest.raises(InputError, match="2D"):
        segmenter.segment(pydicom.data.get_testdata_file("CT_small.dcm"), ["liver"])


def image_of(array, components=False):
    return sitk.GetImageFromArray(array, isVector=components)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.nii.gz"), "does not exist"),
        (lambda p: (p / "notes.nii.gz").write_text("not an image") and str(p / "notes.nii.gz"), "cannot read"),
        (lambda p: str(p), "without a DICOM series"),
        (lambda p: image_of(np.random.rand(16, 16).astype(np.float32)), "2D"),
        (lambda p: image_of(np.random.rand(1, 16, 16).astype(np.float32)), "2D"),
        (lambda p: image_of(np.random.rand(3, 4, 16, 16).astype(np.float32)), "4D"),
        (lambda p: image_of(np.random.rand(4, 16, 16, 3).astype(np.float32), True), "RGB"),
        (lambda p: image_of(np.full((4, 16, 16), 7, np.int16)), "constant"),
        (lambda p: image_of(np.where(np.eye(16)[None] > 0, np.nan, 1.0).repeat(4, 0)), "NaN"),
        (lambda p: image_of(np.where(np.eye(16)[None] > 0, np.inf, 1.0).repeat(4, 0)), "NaN or infinite"),
        (lambda p: VolumeInput(np.zeros((4, 4)), (1, 1, 1), (0, 0, 0), np.eye(3).ravel()), "3D"),
        (lambda p: 42, "unsupported input"),
    ],
)
def test_bad_inputs_are_refused(segmenter, tmp_path, make, message):
    source = make(tmp_path)
    with pytest.raises(InputError, match=message):
        segmenter.segment(source, ["brain"])


@pytest.mark.parametrize("prompts", [[], [""], ["  \t"], ["brain", " "], None, [None]])
def test_empty_prompts_are_refused(prompts):
    with pytest.raises(InputError, match="prompt"):
        check_prompts(prompts)


def test_prompts_are_normalised():
    assert check_prompts("  left   kidney ") == ["left kidney"]


def test_long_prompt_is_truncated_with_warning(segmenter, caplog):
    image = image_of(np.random.rand(3, 16, 16).astype(np.float32))
    with caplog.at_level(logging.WARNING):
        res = segmenter.segment(image, ["liver " * 300], prompt_text="raw")
    assert any("truncated" in r.message for r in caplog.records)
    assert res.segments[0].label == 1


def test_missing_model_and_bad_options(tiny_bundle, segmenter):
    with pytest.raises(BundleError):
        Segmenter("/nonexistent/model/folder", device="cpu")
    with pytest.raises(BundleError):
        Segmenter("no-such-model-v9.9.9", device="cpu")
    image = image_of(np.random.rand(3, 16, 16).astype(np.float32))
    with pytest.raises(TypeError, match="unknown segment options"):
        segmenter.segment(image, ["brain"], treshold=0.3)
    with pytest.raises(ValueError, match="slice_axis"):
        segmenter.segment(image, ["brain"], slice_axis="oblique")
    with pytest.raises(ValueError, match="CT window"):
        segmenter.segment(image, ["brain"], ct_window="liverish")


def test_inputs_are_never_modified(segmenter, tmp_path):
    arr = np.random.rand(4, 16, 16).astype(np.float32)
    path = tmp_path / "in.nii.gz"
    sitk.WriteImage(image_of(arr), str(path))
    stamp = (path.stat().st_mtime_ns, path.read_bytes())
    vol = VolumeInput(arr, (1, 1, 1), (0, 0, 0), np.eye(3).ravel())
    copy = arr.copy()
    segmenter.segment(str(path), ["brain"])
    segmenter.segment(vol, ["brain"])
    assert (path.stat().st_mtime_ns, path.read_bytes()) == stamp and np.array_equal(arr, copy)


def test_vocabulary_matching():
    voc = [{"name": "kidney", "synonyms": ["renal"], "lateral": True}, "liver", {"name": "lung", "region": "lung"}]
    m = match_prompt("R renal", voc)
    assert (m.name, m.side, m.window) == ("kidney", "right", "soft_tissue")
    assert match_prompt("both lungs please", voc).side == "both"
    assert match_prompt("the lung", voc).window == "lung"
    assert match_prompt("tumour", voc).name is None
    assert match_prompt("fractured femur", []).window == "bone"
    assert match_prompt("hippocampus", []).window == "brain"
