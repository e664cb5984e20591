"""Whole-volume engine: geometry of outputs, orientation invariance, caching, cancel, presence gating, labelmaps."""

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_volumes import brain_crop, reoriented, rotated, same_geometry, synthetic_ct  # noqa: E402

from TextSegmentLib.engine import Cancelled, Result, Segmenter, SegmentReport, VolumeInput  # noqa: E402

ORIENTATIONS = {
    "identity": ((0, 1, 2), (False, False, False)),
    "ras": ((0, 1, 2), (True, True, False)),
    "permuted": ((2, 0, 1), (False, True, False)),
    "permuted_flipped": ((1, 2, 0), (True, False, True)),
}
#: keep every slice a model says is present and every voxel of it: decisive, weight-independent masks
ALL = {"presence_threshold": 0.0, "mask_threshold": 0.0, "min_component_ml": 0.0}


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    return Segmenter(str(tiny_bundle), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def brain():
    return brain_crop()


@pytest.fixture(scope="module")
def brain_result(segmenter, brain):
    return segmenter.segment(brain, ["left hippocampus", "brain"])


def test_result_api(brain_result, brain):
    assert isinstance(brain_result, Result)
    assert same_geometry(brain_result.labelmap, brain)
    assert brain_result.labelmap.GetPixelID() == sitk.sitkUInt8
    segs = brain_result.segments
    assert [s.prompt for s in segs] == ["left hippocampus", "brain"] and [s.label for s in segs] == [1, 2]
    assert all(isinstance(s, SegmentReport) and 0.0 <= s.confidence <= 1.0 for s in segs)
    assert segs[0].matched == "hippocampus" and segs[0].side == "left" and segs[1].matched == "brain"
    mask = brain_result.mask(0)
    assert mask.dtype == bool and mask.shape == sitk.GetArrayViewFromImage(brain).shape
    assert segs[0].volume_ml == pytest.approx(mask.sum() * 0.001, abs=1e-3)
    d = brain_result.to_dict()
    assert json.loads(json.dumps(d))["segments"][0]["prompt"] == "left hippocampus"


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_same_volume_any_orientation_same_segmentation(segmenter, brain, name):
    perm, flips = ORIENTATIONS[name]
    moved = reoriented(brain, perm, flips)
    ref = segmenter.segment(brain, ["brain"], min_component_ml=0.0)
    res = segmenter.segment(moved, ["brain"], min_component_ml=0.0)
    assert same_geometry(res.labelmap, moved)
    # map the reoriented labelmap back onto the reference grid voxel by voxel (pure permutation, exact)
    back = sitk.Resample(res.labelmap, brain, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(ref.labelmap))
    assert res.segments[0].volume_ml == pytest.approx(ref.segments[0].volume_ml)


def test_oblique_input_keeps_geometry_and_says_so(segmenter, brain, caplog):
    segmenter.conform_oblique = True
    slight = rotated(brain, 4)  # within CONFORM_DEGREES: nearest axis, no resampling
    res = segmenter.segment(slight, ["brain"], **ALL)
    assert same_geometry(res.labelmap, slight)
    ref = segmenter.segment(brain, ["brain"], **ALL)
    assert np.array_equal(res.mask(0), ref.mask(0))  # nearest axis: the same voxels, the same answer
    with caplog.at_level(logging.INFO):
        strong = rotated(brain, 35)  # resampled onto the anatomical axes, the masks back onto its grid
        res = segmenter.segment(strong, ["brain"], **ALL)
    assert same_geometry(res.labelmap, strong)
    assert any("oblique" in r.message for r in caplog.records)
    assert res.to_dict()["oblique_degrees"] == pytest.approx(35, abs=0.1)
    assert res.mask(0).shape == sitk.GetArrayViewFromImage(strong).shape
    assert res.mask(0).any()
    segmenter.conform_oblique = False  # asked off: the nearest axes, the same voxels as the straight grid
    with caplog.at_level(logging.WARNING):
        res = segmenter.segment(strong, ["brain"], **ALL)
    assert np.array_equal(res.mask(0), ref.mask(0)) and any("conform" in r.message for r in caplog.records)


def test_cached_and_uncached_paths_identical(tiny_bundle, brain):
    seg = Segmenter(str(tiny_bundle), device="cpu", batch_size=3)
    calls = []
    original = seg.model.encode_image
    seg.model.encode_image = lambda x: calls.append(len(x)) or original(x)
    every = {"presence_threshold": 0.0}  # every slice present, so every slice is decoded (and encoded once)
    first = seg.segment(brain, ["brain"], **every)
    n_first = sum(calls)
    second = seg.segment(brain, ["hippocampus", "brain"], **every)
    assert sum(calls) == n_first == brain.GetSize()[2]  # no re-encoding for further prompts
    naive = seg.segment(brain, ["hippocampus", "brain"], use_cache=False, **every)
    assert sum(calls) == 2 * n_first  # the naive path encodes again (once per call)
    for i in range(2):
        assert np.array_equal(second.mask(i), naive.mask(i))
        assert second.segments[i].confidence == naive.segments[i].confidence
    assert np.array_equal(first.mask(0), second.mask(1))
    # the same volume stored differently hits the cache too (key from canonical content)
    seg.segment(reoriented(brain, (1, 0, 2), (True, False, False)), ["brain"], **every)
    assert sum(calls) == 2 * n_first


def test_cache_limit_recomputes_with_message(tiny_bundle, brain, caplog):
    seg = Segmenter(str(tiny_bundle), device="cpu", cache_limit_mb=0.01)
    with caplog.at_level(logging.WARNING):
        a = seg.segment(brain, ["brain"])
    assert any("cache limit" in r.message for r in caplog.records)
    b = seg.segment(brain, ["brain"])
    assert np.array_equal(a.mask(0), b.mask(0)) and seg.cache.used_mb == 0


def test_cancel_stops_within_one_batch(tiny_bundle, brain):
    seg = Segmenter(str(tiny_bundle), device="cpu", batch_size=2)
    batches = []
    original = seg.model.encode_image
    seg.model.encode_image = lambda x: batches.append(len(x)) or original(x)
    with pytest.raises(Cancelled):  # every slice present: many batches, each encoding the slices it decodes
        seg.segment(brain, ["brain"], cancel=lambda: len(batches) >= 2, presence_threshold=0.0, slice_stride=1)
    assert len(batches) == 2  # cancel is checked before every batch: no batch ran after it said stop
    decoded = []
    original_decode = seg.model.decode
    seg.model.decode = lambda *a, **k: decoded.append(1) or original_decode(*a, **k)
    with pytest.raises(Cancelled):
        seg.segment(brain, ["brain"], cancel=lambda: len(decoded) >= 1, presence_threshold=0.0, slice_stride=1)
    assert len(decoded) == 1


def test_progress_reaches_one(segmenter, brain):
    seen = []
    segmenter.segment(brain, ["brain", "liver"], progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(isinstance(m, str) for _, m in seen)


def test_absent_target_is_empty_and_not_found(segmenter, brain):
    res = segmenter.segment(brain, ["liver"], presence_threshold=1.0)
    seg = res.segments[0]
    assert not seg.found and seg.volume_ml == 0 and seg.slices is None and 0 < seg.confidence < 1
    assert not sitk.GetArrayViewFromImage(res.labelmap).any()


def test_overlaps_of_equal_segments_go_to_the_most_confident_prompt(segmenter, brain):
    res = segmenter.segment(brain, ["brain", "left hippocampus", "liver"], **ALL)
    conf = [s.confidence for s in res.segments]
    assert all(res.mask(i).all() for i in range(3))  # three equal segments: size decides nothing
    for labelmap in (res.labelmap, res.labelmap_for("confident")):
        assert (sitk.GetArrayViewFromImage(labelmap) == int(np.argmax(conf)) + 1).all()
    assert (sitk.GetArrayViewFromImage(res.labelmap_for("first")) == 1).all()


def test_cleanup_removes_single_slice_components(segmenter, brain):
    loose = segmenter.segment(brain, ["brain"], min_slices=1, min_component_ml=0.0, fill_holes=False)
    strict = segmenter.segment(brain, ["brain"], min_slices=4, min_component_ml=0.5, largest_only=True)
    assert strict.mask(0).sum() <= loose.mask(0).sum()
    assert not (strict.mask(0) & ~segmenter.segment(brain, ["brain"], min_slices=4, fill_holes=True).mask(0)).any()


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_other_slice_axes_keep_geometry(segmenter, axis):
    small = brain_crop((14, 12, 10))
    res = segmenter.segment(small, ["brain"], slice_axis=axis, **ALL)
    assert same_geometry(res.labelmap, small) and res.mask(0).all()


def test_ct_window_from_prompt_anatomy_and_override(segmenter):
    ct = synthetic_ct((4, 24, 24))
    res = segmenter.segment(ct, ["right lung", "liver", "skull"])
    assert res.to_dict()["modality"] == "CT"
    assert [s.ct_window for s in res.segments] == ["lung", "soft_tissue", "bone"]
    over = segmenter.segment(ct, ["liver"], ct_window=(50, 350))
    assert over.segments[0].ct_window == "level 50.0 width 350.0"
    assert segmenter.segment(ct, ["liver"], modality="MR").to_dict()["modality"] == "MR/other"


def test_volume_input_and_real_files(segmenter, tmp_path):
    import nibabel

    anat = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"
    res = segmenter.segment(str(anat), "brain")
    assert same_geometry(res.labelmap, sitk.ReadImage(str(anat)))
    image = sitk.ReadImage(str(anat))
    vol = VolumeInput(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    assert np.array_equal(segmenter.segment(vol, "brain").mask(0), res.mask(0))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".seg.nrrd"])
def test_save_is_atomic_and_keeps_geometry(brain_result, brain, tmp_path, suffix):
    out = tmp_path / f"labels{suffix}"
    brain_result.save(out)
    saved = sitk.ReadImage(str(out))
    assert same_geometry(saved, brain)
    assert np.array_equal(sitk.GetArrayFromImage(saved), sitk.GetArrayFromImage(brain_result.labelmap))
    report = json.loads(Path(str(out) + ".json").read_text())
    assert [s["prompt"] for s in report["segments"]] == ["left hippocampus", "brain"]
    assert set(report["segments"][0]) >= {"prompt", "label", "found", "confidence", "volume_ml", "seconds", "matched"}
    if suffix == ".seg.nrrd":
        assert saved.GetMetaData("Segment0_Name") == "left hippocampus"
    with pytest.raises(FileExistsError):
        brain_result.save(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_slice_stride_decodes_fewer_slices_and_agrees_where_present(tiny_bundle, brain):
    seg = Segmenter(str(tiny_bundle), device="cpu")
    decoded = []
    original = seg.model.decode
    seg.model.decode = lambda emb, **k: decoded.append(len(emb)) or original(emb, **k)
    n = brain.GetSize()[2]
    full = seg.segment(brain, ["brain"], presence_threshold=0.0, min_component_ml=0.0)
    strided = seg.segment(brain, ["brain"], presence_threshold=0.0, min_component_ml=0.0, slice_stride=3)
    assert np.array_equal(full.mask(0), strided.mask(0))  # every slice present: all decoded
    decoded.clear()
    absent = seg.segment(brain, ["brain"], presence_threshold=1.0, slice_stride=4)
    assert sum(decoded) == len(range(0, n, 4)) + (0 if (n - 1) % 4 == 0 else 1)
    assert not absent.segments[0].found


@pytest.mark.parametrize("flips", [(False, False, False), (False, True, True)])
def test_reported_slices_are_input_indices(segmenter, brain, flips):
    image = reoriented(brain, (0, 1, 2), flips)
    res = segmenter.segment(image, ["brain"], presence_threshold=1.0)
    segmenter.refine(res, 0, 3, box=(5, 5, 30, 40))
    ks = np.flatnonzero(res.mask(0).any(axis=(1, 2)))
    assert ks.tolist() == [3] and res.segments[0].slices == (3, 3)


def test_stray_islands_option_is_checked_and_applied(segmenter, brain):
    for bad in (-0.1, 1.5, "0.1", True, float("nan")):
        with pytest.raises(ValueError, match="min_component_fraction"):
            segmenter.segment(brain, ["brain"], min_component_fraction=bad)
    keep_all = segmenter.segment(brain, ["left hippocampus"], min_component_fraction=0.0, min_component_ml=0.0)
    strict = segmenter.segment(brain, ["left hippocampus"], min_component_fraction=1.0, min_component_ml=0.0)
    assert not (strict.mask(0) & ~keep_all.mask(0)).any()  # only removes
    assert strict.mask(0).sum() <= keep_all.mask(0).sum()
