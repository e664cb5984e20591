"""Inputs that would give a silently wrong result are refused with a message saying what is wrong and what to do
(issue 30, part 3): DICOM series with a missing slice or mixed orientations, NIfTI headers whose qform and sform
disagree, sheared grids, NaN/infinite or overflowing voxels, a bitpix that disagrees with the datatype, a model whose
weights are NaN, and ``models list`` agreeing with ``models verify``. Real files written by SimpleITK, then edited
byte by byte where a header must be wrong."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest_http import home, write_catalog  # noqa: F401
from fuzz_helpers import cli, one_torch_thread, seg, small_volume
from test_engine_inputs import write_dicom_series

from TextSegmentLib.engine import InputError, VolumeInput, load_input
from TextSegmentLib.engine.io import INPUT_WARNINGS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def _ct(shape=(6, 32, 32)) -> np.ndarray:
    arr = np.full(shape, -1000, np.int16)
    arr[:, 8:24, 8:24] = 40
    return arr


# --- DICOM ---------------------------------------------------------------------------------------------------------
def test_a_dicom_series_with_a_missing_slice_is_refused(tiny_bundle, tmp_path, capsys):
    folder = tmp_path / "series"
    write_dicom_series(folder, _ct())
    assert load_input(folder)[0].GetSize() == (32, 32, 6)  # complete: read as before
    (folder / "slice002.dcm").unlink()
    with pytest.raises(InputError, match="not evenly spaced.*a slice is missing"):
        load_input(folder)
    code, _, err = seg(capsys, tiny_bundle, folder, "--prompt", "liver", "--output", tmp_path / "o.nii.gz")
    assert code == 2 and "a slice is missing" in err and not (tmp_path / "o.nii.gz").exists(), err


def test_a_dicom_series_mixing_orientations_under_one_uid_is_refused(tmp_path):
    folder = tmp_path / "series"
    write_dicom_series(folder, _ct())
    odd = sitk.ReadImage(str(folder / "slice003.dcm"))
    for key in odd.GetMetaDataKeys():
        odd.SetMetaData(key, odd.GetMetaData(key))
    odd.SetMetaData("0020|0037", "0\\1\\0\\0\\0\\-1")  # a sagittal slice in an axial series
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(folder / "slice003.dcm"))
    writer.Execute(odd)
    with pytest.raises(InputError, match="different orientations under one series"):
        load_input(folder)


# --- NIfTI headers -------------------------------------------------------------------------------------------------
def _nifti(path: Path, array=None) -> Path:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 7, 8)).astype(np.float32) if array is None
                                   else array)  # fmt: skip
    image.SetSpacing((1.0, 1.5, 2.0))
    image.SetOrigin((5.0, -3.0, 10.0))
    sitk.WriteImage(image, str(path))
    return path


def _patch(path: Path, offset: int, fmt: str, *values) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + struct.calcsize("<" + fmt)] = struct.pack("<" + fmt, *values)
    path.write_bytes(bytes(data))


def _srow(path: Path):
    return struct.unpack("<12f", path.read_bytes()[280:328])


def test_a_nifti_whose_qform_and_sform_disagree_follows_the_sform_and_says_so(tiny_bundle, tmp_path, capsys):
    path = _nifti(tmp_path / "scan.nii")
    codes = struct.unpack("<2h", path.read_bytes()[252:256])
    assert codes[0] > 0 and codes[1] > 0  # SimpleITK writes both, in agreement
    assert INPUT_WARNINGS not in load_input(path)[1]
    srow = list(_srow(path))
    srow[3] += 40.0  # the sform moves the volume 40 mm (RAS x); the qform does not
    _patch(path, 280, "12f", *srow)
    image, meta, _ = load_input(path)
    assert image.GetOrigin()[0] == pytest.approx(-(-5.0 + 40.0), abs=1e-3)  # the sform's, in LPS
    assert "qform and sform disagree (by up to 40 mm); the sform was followed" in meta[INPUT_WARNINGS]
    out = tmp_path / "o.nii.gz"
    code, _, err = seg(capsys, tiny_bundle, path, "--prompt", "brain", "--output", out)
    assert code == 0 and "the sform was followed" in err, err
    report = json.loads(Path(str(out) + ".json").read_text())
    assert any("the sform was followed" in w for w in report["warnings"]), report["warnings"]
    assert report["input_warnings"] and report["origin"][0] == pytest.approx(-35.0, abs=1e-3)
    written = sitk.ReadImage(str(out))  # the labelmap: one geometry, the sform's, in its qform and its sform
    assert written.GetOrigin()[0] == pytest.approx(-35.0, abs=1e-3)
    assert written.GetMetaData("srow_x").split()[-1] == "35" and float(written.GetMetaData("qoffset_x")) == 35.0


def test_a_sheared_grid_is_refused(tmp_path):
    path = _nifti(tmp_path / "scan.nii")
    srow = list(_srow(path))
    srow[1] = 0.5  # x grows with j: the axes are not at right angles (a gantry tilt left unresampled)
    _patch(path, 280, "12f", *srow)
    _patch(path, 252, "h", 0)
    with pytest.raises(InputError, match="sheared voxel grid"):
        load_input(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_voxels_are_refused_in_nifti_too(tmp_path, suffix, bad):
    array = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    array[3, 3, 3] = bad
    path = _nifti(tmp_path / f"scan{suffix}", array)
    with pytest.raises(InputError, match="1 NaN or infinite voxels"):
        load_input(path)


def test_values_that_would_overflow_are_refused(tmp_path):
    array = np.random.default_rng(0).random((6, 7, 8))
    array[2, 2, 2] = 1e300
    with pytest.raises(InputError, match="beyond any scanner's range"):
        load_input(VolumeInput(array, (1, 1, 1), (0, 0, 0), np.eye(3).ravel()))
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "big.nrrd"))
    with pytest.raises(InputError, match="beyond any scanner's range"):
        load_input(tmp_path / "big.nrrd")


def test_a_bitpix_that_disagrees_with_the_datatype_is_refused(tmp_path):
    path = _nifti(tmp_path / "scan.nii")
    _patch(path, 72, "h", 8)  # float32 data, but bitpix says one byte per voxel: a cut file would pass as whole
    path.write_bytes(path.read_bytes()[: 352 + 6 * 7 * 8])
    with pytest.raises(InputError, match="bitpix"):
        load_input(path)


# --- models ---------------------------------------------------------------------------------------------------------
def _nan_bundle(tiny_bundle: Path, folder: Path) -> Path:
    from safetensors.torch import load_file, save_file

    bundle = Path(shutil.copytree(tiny_bundle, folder))
    state = load_file(str(bundle / "model.safetensors"))
    key = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[key] = state[key] * float("nan")
    save_file(state, str(bundle / "model.safetensors"))
    card = json.loads((bundle / "model.json").read_text())
    card.pop("weights_sha256")
    (bundle / "model.json").write_text(json.dumps(card))
    return bundle


def test_a_model_with_nan_weights_and_no_hash_is_broken_not_not_found(tiny_bundle, tmp_path, capsys):
    from TextSegmentLib.checkpoint import BundleError, load_bundle

    bundle = _nan_bundle(tiny_bundle, tmp_path / "nan")
    with pytest.raises(BundleError, match="is broken: its weights .* hold NaN"):
        load_bundle(bundle)
    scan = small_volume(tmp_path / "in.nii.gz")
    code, _, err = seg(capsys, bundle, scan, "--prompt", "brain", "--output", tmp_path / "o.nii.gz")
    assert code == 2 and "is broken" in err and not (tmp_path / "o.nii.gz").exists(), err


def test_models_list_never_says_yes_for_a_model_verify_rejects(tiny_bundle, home, tmp_path, capsys):  # noqa: F811
    from TextSegmentLib.catalog import import_model

    write_catalog(home.parent / "Resources" / "models.json", [])
    folder = import_model(str(tiny_bundle), "mine-v1.0.0")
    code, out, _ = cli(capsys, "models", "list")
    line = next(x for x in out.splitlines() if x.startswith("mine-v1.0.0"))
    assert code == 0 and line.split()[1] == "yes", out
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\xff" * 8  # the same size, other numbers
    weights.write_bytes(bytes(data))
    code, out, _ = cli(capsys, "models", "verify", "mine-v1.0.0")
    assert code == 1 and "FAILED" in out
    code, out, _ = cli(capsys, "models", "list")
    line = next(x for x in out.splitlines() if x.startswith("mine-v1.0.0"))
    assert line.split()[1] != "yes" and "changed after it was installed" in out, out
