"""Writers and readers that cannot lie: every format verified before the rename (a full disk simulated for real with a
file-size limit), umask modes, no replacing what appeared meanwhile, labelmaps where nothing found is invisible,
.seg.nrrd layers as Slicer reads them, and inputs refused when they hold fewer voxels than their header promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fuzz_helpers import (
    SUBPROCESS_ENV,
    digest,
    expected_dir_mode,
    expected_file_mode,
    mode,
    one_torch_thread,
    small_volume,
    temporary_files,
)

from TextSegmentLib.atomic import TargetExists, atomic_file
from TextSegmentLib.engine import InputError, Segmenter
from TextSegmentLib.engine.readcheck import check_image_file

ROOT = Path(__file__).resolve().parents[1]
ALL = {"presence_threshold": 0.0, "mask_threshold": 0.0, "min_component_ml": 0.0}
FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def result(tiny_bundle, tmp_path_factory):
    """A real result on an 8 x 12 x 10 volume: 'brain' everywhere, 'left hippocampus' a small cube inside it, and
    'lung' a cube elsewhere (masks set by hand: the random model's own masks mean nothing)."""
    scan = small_volume(tmp_path_factory.mktemp("writers") / "in.nii.gz")
    res = Segmenter(str(tiny_bundle), device="cpu").segment(str(scan), ["brain", "left hippocampus", "lung"], **ALL)
    for state in res.states:
        state.mask[:] = False
    res.states[0].mask[:] = True
    res.states[1].mask[2:5, 3:6, 3:6] = True
    res.states[2].mask[0:2, 0:2, 0:2] = True
    res._invalidate()
    return res


def _labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_reads_back_with_the_umask_and_nothing_left(result, tmp_path, suffix):
    old = os.umask(0o027)
    try:
        out = result.save(tmp_path / "res" / f"labels{suffix}")
    finally:
        os.umask(old)
    assert (mode(out), mode(Path(str(out) + ".json"))) == (0o640, 0o640)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, out.name + ".json"])
    report = json.loads(Path(str(out) + ".json").read_text())
    image = sitk.ReadImage(str(out))
    assert image.GetSize() == (10, 12, 8) and np.allclose(image.GetSpacing(), (1.2, 1.0, 2.0))
    if suffix != ".seg.nrrd":
        assert np.array_equal(_labels(out), sitk.GetArrayFromImage(result.labelmap))
    with pytest.raises(FileExistsError):
        result.save(out)
    os.chmod(out, 0o600)
    result.save(out, overwrite=True)
    assert mode(out) == expected_file_mode() and report["segments"][1]["visible_voxels"] == 27


def test_smaller_segments_are_drawn_over_larger_ones_and_hidden_ones_are_reported(result, tmp_path):
    out = result.save(tmp_path / "labels.nii.gz")
    labels = _labels(out)
    report = json.loads(Path(str(out) + ".json").read_text())
    brain, hippo, lung = report["segments"]
    assert hippo["visible_voxels"] == hippo["voxels"] == int((labels == 2).sum()) == 27
    assert lung["visible_voxels"] == 8 and brain["visible_voxels"] == 960 - 27 - 8 == int((labels == 1).sum())
    assert brain["visible_ml"] == pytest.approx(925 * 2.4e-3, abs=1e-3) and brain["volume_ml"] == pytest.approx(2.304)
    assert "'brain'" in report["warnings"][0] and "partly hidden" in report["warnings"][0]
    assert "'left hippocampus'" in report["warnings"][0] and brain["warnings"] == report["warnings"]
    # the earlier prompt on top: the hippocampus, found, would be invisible: the report says so
    first = result.save(tmp_path / "first.nii.gz", overlap="first")
    report = json.loads(Path(str(first) + ".json").read_text())
    assert not (_labels(first) == 2).any() and report["segments"][1]["visible_voxels"] == 0
    assert any("'left hippocampus'" in w and "fully hidden" in w for w in report["warnings"])
    assert np.array_equal(sitk.GetArrayFromImage(result.labelmap_for("smaller")), labels)


def test_seg_nrrd_layers_names_colours_and_tags_as_slicer_reads_them(result, tmp_path):
    slicer = pytest.importorskip("slicer")
    out = result.save(tmp_path / "labels.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(str(out))
    assert reader.ReadData(node)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 3 and segmentation.GetNumberOfLayers() == 2
    ids = [segmentation.GetNthSegmentID(i) for i in range(3)]
    assert [segmentation.GetSegment(i).GetName() for i in ids] == ["brain", "left hippocampus", "lung"]
    assert [segmentation.GetLayerIndex(i) for i in ids] == [0, 1, 1]  # lung overlaps nothing in layer 1
    assert segmentation.GetSegment(ids[0]).GetColor() == pytest.approx((250 / 255, 250 / 255, 225 / 255), abs=1e-5)
    from TextSegmentLib.slicer.bridge import get_tag

    assert get_tag(segmentation.GetSegment(ids[1]), "TextSegment.Found") == "true"
    assert "12738006" in get_tag(segmentation.GetSegment(ids[0]), "TerminologyEntry")  # brain, from the terminology
    image = sitk.ReadImage(str(out))
    layers = sitk.GetArrayFromImage(image)
    for i, layer in enumerate([0, 1, 1]):
        assert np.array_equal(layers[..., layer] == i + 1, result.mask(i))


def test_headers_never_carry_control_characters(result, tmp_path):
    prompt = result.states[2].prompt
    result.states[2].prompt = "lung\nSegment0_Name:=evil\x1b[2J"
    result._invalidate()
    try:
        out = result.save(tmp_path / "labels.seg.nrrd")
    finally:
        result.states[2].prompt = prompt
        result._invalidate()
    header = out.read_bytes().split(b"\n\n", 1)[0]
    assert b"\x1b" not in header and header.count(b"\nSegment0_Name:=") == 1  # no injected header line
    assert sitk.ReadImage(str(out)).GetMetaData("Segment2_Name") == "lung Segment0_Name:=evil [2J"
    report = json.loads(Path(str(out) + ".json").read_text())  # strict JSON, escapes intact
    assert report["segments"][2]["prompt"] == "lung\nSegment0_Name:=evil\x1b[2J"


def test_a_report_with_nan_is_refused_and_nothing_written(result, tmp_path):
    options = result.info["options"]
    result.info["options"] = dict(options, ct_window=[float("nan"), float("nan")])
    try:
        with pytest.raises(ValueError, match="NaN"):
            result.save(tmp_path / "labels.nii.gz")
    finally:
        result.info["options"] = options
    assert list(tmp_path.iterdir()) == []


FULL_DISK = r"""
import os, resource, sys
from pathlib import Path
import numpy as np, SimpleITK as sitk
from TextSegmentLib.engine.writers import WriteFailed, write_image
folder = Path(sys.argv[1])
image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (16, 32, 32)).astype(np.uint8))
for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd"):
    keep = folder / f"kept{suffix}"
    write_image(sitk.Image(8, 8, 8, sitk.sitkUInt8), keep)  # an earlier result that must survive
    before = keep.read_bytes()
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    for target, overwrite in ((folder / f"new{suffix}", False), (keep, True)):
        try:
            write_image(image, target, overwrite=overwrite, report="{}")
            print("NOT REFUSED", target)
        except WriteFailed as exc:
            assert str(target) in str(exc) and "disk" in str(exc), exc
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    assert keep.read_bytes() == before and not (folder / f"new{suffix}").exists(), suffix
print("ok", sorted(p.name for p in folder.iterdir()))
"""


def test_a_full_disk_never_leaves_a_short_file_in_any_format(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        capture_output=True, encoding="utf-8", errors="replace", timeout=300,
        env=SUBPROCESS_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOT REFUSED" not in proc.stdout and proc.stdout.startswith("ok")
    assert temporary_files(tmp_path) == [] and not list(tmp_path.glob("new*"))


def test_a_target_that_appears_meanwhile_is_not_replaced(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with pytest.raises(TargetExists, match="appeared while"):
        with atomic_file(target, ".nii.gz", overwrite=False) as tmp:
            Path(tmp).write_bytes(b"new")
            target.write_bytes(b"written by another run")
    assert target.read_bytes() == b"written by another run" and temporary_files(tmp_path) == []

    def refuse(tmp):
        raise OSError("does not read back")

    with pytest.raises(OSError, match="read back"):
        with atomic_file(target, overwrite=True, verify=refuse) as tmp:
            Path(tmp).write_bytes(b"new")
    assert target.read_bytes() == b"written by another run" and temporary_files(tmp_path) == []


def test_bundles_and_installed_models_honour_the_umask(tiny_bundle, tmp_path, monkeypatch):
    import shutil

    from TextSegmentLib.catalog import import_model
    from TextSegmentLib.checkpoint import load_bundle, save_bundle

    old = os.umask(0o027)
    try:
        saved = save_bundle(load_bundle(tiny_bundle), tmp_path / "bundle", {"name": "umask", "version": "1.0.0"})
        assert mode(saved) == 0o750 and mode(saved / "model.json") == 0o640
    finally:
        os.umask(old)
    source = tmp_path / "private"
    shutil.copytree(saved, source)
    os.chmod(source, 0o700)
    monkeypatch.setenv("TEXTSEGMENT_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TEXTSEGMENT_CATALOG", str(tmp_path / "none.json"))
    (tmp_path / "none.json").write_text('{"catalog_version": 1, "models": []}')
    assert mode(import_model(str(source))) == expected_dir_mode()


# --- reads ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".nhdr", ".mhd", "raw.nrrd", "gz.mha"])
def test_truncated_files_are_refused_in_every_format(tmp_path, suffix):
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 9, 7)).astype(np.float32))
    name = "in" + (suffix if "." == suffix[0] else "." + suffix.split(".")[1])
    path = tmp_path / name
    compress = suffix in (".nii.gz", ".nrrd", "gz.mha")
    sitk.WriteImage(image, str(path), compress)
    check_image_file(path)
    data_file = path
    if suffix in (".nhdr", ".mhd"):  # the voxels are in a second file
        data_file = next(p for p in tmp_path.iterdir() if p != path)
    data = data_file.read_bytes()
    data_file.write_bytes(data[: len(data) - 50])
    with pytest.raises(InputError, match="truncated|cut short|damaged") as info:
        check_image_file(path)
    assert str(data_file) in str(info.value) and "again" in str(info.value)


def test_damaged_gzip_fifos_and_empty_files_are_refused(tmp_path):
    path = small_volume(tmp_path / "in.nii.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt|cut short"):
        check_image_file(path)
    os.mkfifo(tmp_path / "fifo.nii.gz")
    with pytest.raises(InputError, match="is a FIFO"):
        check_image_file(tmp_path / "fifo.nii.gz")
    (tmp_path / "empty.nii").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        check_image_file(tmp_path / "empty.nii")
    good = small_volume(tmp_path / "good.nii.gz")
    stamp = digest(good)
    check_image_file(good)
    assert digest(good) == stamp
