"""Dataset converters (MSD, nnU-Net v2, TotalSegmentator-style, generic) on small real layouts made from Colin27."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is a folder of the repository, not installed

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("yaml")
sitk = pytest.importorskip("SimpleITK")

TEMPLATES = Path("/usr/share/mricron/templates")
pytestmark = pytest.mark.skipif(not (TEMPLATES / "aal.nii.gz").exists(), reason="mricron-data is not installed")


@pytest.fixture(scope="module")
def slab():
    image = sitk.ReadImage(str(TEMPLATES / "ch2.nii.gz"))[:, :, 58:64]
    labels = sitk.ReadImage(str(TEMPLATES / "aal.nii.gz"))[:, :, 58:64]
    arr = sitk.GetArrayFromImage(labels)
    small = np.where(np.isin(arr, [37, 38]), arr - 36, 0).astype(np.uint8)  # 1 = Hippocampus_L, 2 = Hippocampus_R
    lab = sitk.GetImageFromArray(small)
    lab.CopyInformation(labels)
    return image, lab


def _write(img, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


def _prepare(tmp: Path, datasets):
    from training.prepare import prepare

    cache = prepare({"prepare": {"cache": str(tmp / "cache"), "image_size": 64, "min_pixels": 4, "datasets": datasets}})
    return json.loads((cache / "manifest.json").read_text()), cache


def test_msd_nnunet_totalsegmentator_generic(tmp_path, slab):
    image, lab = slab
    msd = tmp_path / "Task99_Hippo"
    _write(image, msd / "imagesTr" / "hip_001.nii.gz")
    _write(lab, msd / "labelsTr" / "hip_001.nii.gz")
    (msd / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Task99_Hippo",
                "modality": {"0": "MRI"},
                "labels": {"0": "background", "1": "Hippocampus_L", "2": "Hippocampus_R"},
                "training": [{"image": "./imagesTr/hip_001.nii.gz", "label": "./labelsTr/hip_001.nii.gz"}],
            }
        )
    )
    v2 = tmp_path / "Dataset042_Hippo"
    _write(image, v2 / "imagesTr" / "h_002_0000.nii.gz")
    _write(lab, v2 / "labelsTr" / "h_002.nii.gz")
    (v2 / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T1"},
                "labels": {"background": 0, "hippocampus_left": 1, "hippocampus_right": 2},
                "file_ending": ".nii.gz",
            }
        )
    )
    ts = tmp_path / "totalseg"
    _write(image, ts / "s0001" / "ct.nii.gz")
    for value, name in ((1, "hippocampus_left"), (2, "hippocampus_right")):
        _write(sitk.Cast(lab == value, sitk.sitkUInt8), ts / "s0001" / "segmentations" / f"{name}.nii.gz")
    gen = tmp_path / "generic"
    (gen / "names.txt").parent.mkdir(parents=True)
    (gen / "names.txt").write_text("1 Left-Hippocampus\n2 Right-Hippocampus\n")
    datasets = [
        {"format": "msd", "root": str(msd), "names": "aal.yaml", "region": "brain"},
        {"format": "nnunet", "root": str(v2), "region": "brain"},
        {"format": "totalsegmentator", "root": str(ts), "modality": "MR", "region": "brain"},
        {
            "format": "generic",
            "layer": "gen",
            "names_table": str(gen / "names.txt"),
            "cases": [
                {"id": "g1", "image": _write(image, gen / "g1.nii.gz"), "labels": _write(lab, gen / "g1l.nii.gz")}
            ],
        },
    ]
    manifest, cache = _prepare(tmp_path, datasets)
    names = [s["name"] for s in manifest["structures"]]
    assert names == ["left hippocampus", "right hippocampus"]  # one structure per name across the four datasets
    left = manifest["structures"][0]
    assert set(left["sources"]) == {"Task99_Hippo", "Dataset042_Hippo", "totalseg:hippocampus_left", "gen"}
    assert left["partner"] == "right hippocampus"
    ids = sorted(c["id"] for c in manifest["cases"])
    assert ids == ["Dataset042_Hippo_h_002", "Task99_Hippo_hip_001", "g1", "totalseg_s0001"]
    reference = None
    for case in manifest["cases"]:
        assert case["modality"] == "MR"
        counts = np.load(cache / case["id"] / "counts.npy")
        assert counts[:, 0].max() > 4 and counts[:, 1].max() > 4
        reference = counts if reference is None else reference
        assert np.array_equal(counts, reference)  # the same data through every converter gives the same cache


def test_val_fraction_and_unknown_format(tmp_path, slab):
    from training.prepare.converters import expand_datasets

    image, lab = slab
    cases = [{"id": f"c{i}", "image": "x", "labels": "y"} for i in range(5)]
    found, _ = expand_datasets(
        {"datasets": [{"format": "generic", "cases": cases, "label_names": {1: "a"}, "val_fraction": 0.4}]}
    )
    assert [c["split"] for c in found] == ["train", "train", "train", "val", "val"]
    with pytest.raises(ValueError, match="unknown dataset format"):
        expand_datasets({"datasets": [{"format": "nope"}]})


def test_prepare_is_orientation_invariant(tmp_path, slab):
    """The same volume stored RAS and LPS (FLanS's orientation warning) gives the same slices and counts."""
    image, lab = slab
    ras_img, ras_lab = sitk.DICOMOrient(image, "RAS"), sitk.DICOMOrient(lab, "RAS")
    lps_img, lps_lab = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(lab, "LPS")
    assert ras_img.GetDirection() != lps_img.GetDirection()
    caches = []
    for name, img, lb in (("ras", ras_img, ras_lab), ("lps", lps_img, lps_lab)):
        d = tmp_path / name
        case = {"id": "c", "image": _write(img, d / "i.nii.gz"), "layers": {"l": {"path": _write(lb, d / "l.nii.gz")}}}
        spec = {
            "cache": str(d / "cache"),
            "image_size": 64,
            "cases": [case],
            "structures": [{"table": True, "layer": "l", "label_names": {1: "Hippocampus_L", 2: "Hippocampus_R"}}],
        }
        from training.prepare import prepare

        caches.append(prepare({"prepare": spec}) / "c")
    for f in ("image_mr.npy", "layer_l.npy", "counts.npy"):
        assert np.array_equal(np.load(caches[0] / f), np.load(caches[1] / f)), f
