"""The Python API with bad and unusual input: geometry, refinement prompts, model names, the console's batch, the
model card's CT windows, one cancel exception and one progress signature. Every refusal is an ``InputError`` (or
the application layer's ``RequestError``) naming the problem; nothing is changed by a refused call."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from engine_volumes import synthetic_ct
from fuzz_helpers import one_torch_thread, small_volume, snapshot, temporary_files

from TextSegmentLib.app import Job, RequestError, open_segmenter, plan_jobs, run_jobs, segment_case, validate_jobs
from TextSegmentLib.checkpoint import BundleError
from TextSegmentLib.engine import Cancelled, InputError, Segmenter, VolumeInput

EYE = np.eye(3).ravel()
ALL = {"presence_threshold": 0.0, "mask_threshold": 0.0, "min_component_ml": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def segmenter(tiny_bundle):
    return Segmenter(str(tiny_bundle), device="cpu")


@pytest.fixture(scope="module")
def result(segmenter, tmp_path_factory):
    return segmenter.segment(str(small_volume(tmp_path_factory.mktemp("api") / "in.nii.gz")), ["brain", "lung"], **ALL)


# --- 9. geometry of arrays from Python --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spacing, origin, direction, field",
    [
        ((1, float("nan"), 1), (0, 0, 0), EYE, "spacing"),
        ((1, 1, float("inf")), (0, 0, 0), EYE, "spacing"),
        ((1, 0, 1), (0, 0, 0), EYE, "spacing"),
        ((1, -2, 1), (0, 0, 0), EYE, "spacing"),
        ((1, 1), (0, 0, 0), EYE, "spacing"),
        ((1, 1, 1), (0, float("nan"), 0), EYE, "origin"),
        ((1, 1, 1), (0, 0, 0), np.r_[EYE[:8], np.nan], "direction"),
        ((1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 2, 0, 0, 0, 1), "direction"),
        ((1, 1, 1), (0, 0, 0), (1, 1, 0, 0, 1, 0, 0, 0, 1), "direction"),
        ((1, 1, 1), (0, 0, 0), "identity", "direction"),
    ],
)
def test_volume_input_with_bad_geometry_is_refused_naming_the_field(spacing, origin, direction, field):
    with pytest.raises(InputError, match=field):
        VolumeInput(np.random.rand(4, 5, 6).astype(np.float32), spacing, origin, direction)


def test_a_duck_typed_volume_is_checked_too(segmenter):
    class Volume:  # what an older bridge passes: array and geometry, no checks of its own
        array = np.random.rand(4, 8, 8).astype(np.float32)
        spacing, origin, direction, metadata = (1.0, 0.0, 1.0), (0, 0, 0), EYE, None

    with pytest.raises(InputError, match="spacing"):
        segmenter.segment(Volume(), ["brain"])


# --- 9. refinement prompts --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "index, slice_index, kwargs, message",
    [
        (2, 3, {"box": (1, 1, 5, 5)}, "prompt_index 2 is not a prompt"),
        (-1, 3, {"box": (1, 1, 5, 5)}, "prompt_index -1 is not a prompt"),
        (True, 3, {"box": (1, 1, 5, 5)}, "prompt_index True"),
        ("0", 3, {"box": (1, 1, 5, 5)}, "prompt_index '0'"),
        (0, 3, {"box": (1, float("nan"), 5, 5)}, "NaN"),
        (0, 3, {"box": (6, 1, 2, 5)}, "inverted"),
        (0, 3, {"box": (40, 50, 60, 70)}, "entirely off the image"),
        (0, 3, {"box": (-30, -30, -20, -20)}, "entirely off the image"),
        (0, 3, {"box": ((40, 50, 3), (60, 70, 3))}, "entirely off the image"),
        (0, 3, {"points": [(2, 2), (40, 2)]}, "off the image"),
        (0, 3, {"points": [(2, float("nan"))]}, "NaN"),
        (0, 3, {"points": [(2, 2)], "labels": [1, 0]}, "one 1"),
        (0, 3, {"points": [(2, 2)], "labels": [2]}, "one 1"),
        (0, 99, {"box": (1, 1, 5, 5)}, "outside"),
        (0, (1.0, float("nan"), 2.0), {"box": (1, 1, 5, 5)}, "NaN"),
        (0, 3, {}, "a box or at least one point"),
        (0, 3, {"box": (1, 1, 5, 5), "coords": "pixels"}, "coords"),
    ],
)
def test_bad_refinement_prompts_are_refused_and_change_nothing(segmenter, result, index, slice_index, kwargs, message):
    before = sitk.GetArrayFromImage(result.labelmap).copy()
    with pytest.raises(InputError, match=message):
        segmenter.refine(result, index, slice_index, **kwargs)
    assert np.array_equal(sitk.GetArrayFromImage(result.labelmap), before) and not result._history


def test_good_refinement_prompts_still_work(segmenter, result):
    segmenter.refine(result, 1, 3, box=(1, 1, 5, 5), max_propagation=0)
    segmenter.refine(result, 1, 3, points=[(2, 2)], labels=[0], max_propagation=0)
    corners = [result.volume.image.TransformIndexToPhysicalPoint((1, 1, 3)), (5.0, 0.0, 11.0)]
    segmenter.refine(result, 1, corners[0], box=tuple(corners), coords="physical", max_propagation=0)
    assert len(result._history) == 3
    for _ in range(3):
        segmenter.undo(result)


# --- 2. model resolution happens once, above the engine ---------------------------------------------------------------
def test_the_engine_takes_a_model_or_a_bundle_folder_only(tiny_bundle):
    with pytest.raises(BundleError, match="open_segmenter"):
        Segmenter("default", device="cpu")
    with pytest.raises(BundleError, match="not a bundle folder"):
        Segmenter("textsegment-brain-lite-v0.1.0", device="cpu")
    assert open_segmenter(str(tiny_bundle), device="cpu").card["name"] == "tiny-test"
    model = open_segmenter(str(tiny_bundle), device="cpu").model
    assert open_segmenter(model, device="cpu").model is model


# --- 1. the console's batch never writes an input ---------------------------------------------------------------------
def test_segment_files_never_replaces_an_input(tiny_bundle, tmp_path):
    slicer = pytest.importorskip("slicer")
    from TextSegmentLib.slicer.logic import TextSegmentLogic
    from TextSegmentLib.slicer.worker import Worker

    scans = tmp_path / "scans"
    small_volume(scans / "a.nii.gz")
    small_volume(scans / "b.nii.gz", seed=1)
    before = snapshot(scans)
    worker = Worker(name="test-fuzz-worker")
    try:
        logic = TextSegmentLogic(slicer.vtkMRMLScene(), model=str(tiny_bundle), device="cpu", worker=worker)
        with pytest.raises(RequestError, match="is the input"):
            logic.segmentFiles(scans, ["brain"], scans, suffix=".nii.gz", overwrite=True)
        with pytest.raises(RequestError, match="control character"):
            logic.segmentFiles(scans, ["brain\x00"], tmp_path / "out")
        assert snapshot(scans) == before and not (tmp_path / "out").exists()
        written = logic.segmentFiles(scans / "a.nii.gz", "brain\nlung", tmp_path / "out", suffix=".nrrd")
        assert [p.name for p in written] == ["a.nrrd"]
        assert [s["prompt"] for s in json.loads((tmp_path / "out" / "a.nrrd.json").read_text())["segments"]] == [
            "brain",
            "lung",
        ]
    finally:
        worker.shutdown()
    assert snapshot(scans) == before


# --- 7. the model card's CT windows -----------------------------------------------------------------------------------
def test_the_model_cards_ct_windows_are_honoured(tiny_bundle, tmp_path):
    bundle = tmp_path / "windows"
    shutil.copytree(tiny_bundle, bundle)
    card = json.loads((bundle / "model.json").read_text())
    card["input"]["ct_windows"] = {**card["input"]["ct_windows"], "soft_tissue": [100, 50], "lung": [-700, 1000]}
    (bundle / "model.json").write_text(json.dumps(card))
    seg = open_segmenter(str(bundle), device="cpu")
    ct = synthetic_ct((4, 24, 24))
    res = segment_case(seg, ct, ["liver", "right lung", "skull"])
    assert [s.prompt for s in res.segments] == ["liver", "right lung", "skull"]
    # windows the card changed are used as its (level, width); an unchanged built-in one keeps its name
    assert [s.window for s in res.states] == [(100.0, 50.0), (-700.0, 1000.0), "bone"]
    assert res.segments[0].ct_window == "level 100.0 width 50.0" and [s.label for s in res.segments] == [1, 2, 3]
    # the window really was used: the same prompt alone with that window gives the same mask
    alone = seg.segment(ct, ["liver"], ct_window=(100, 50))
    assert np.array_equal(alone.mask(0), res.mask(0))
    # an explicit window still wins over the card's
    assert segment_case(seg, ct, ["liver"], ct_window="lung").segments[0].ct_window == "lung"


# --- one cancel exception, one progress signature ---------------------------------------------------------------------
def test_one_cancel_exception_and_one_progress_signature(tiny_bundle, tmp_path):
    from TextSegmentLib import progress
    from TextSegmentLib.catalog import DownloadCancelled
    from TextSegmentLib.slicer import worker

    assert worker.JobCancelled is progress.Cancelled is Cancelled and issubclass(DownloadCancelled, Cancelled)
    scans = tmp_path / "scans"
    for n in range(3):
        small_volume(scans / f"c{n}.nii.gz", seed=n)
    jobs = validate_jobs(plan_jobs([scans], ["brain"], tmp_path / "out")[0])
    seen = []
    summary = run_jobs(jobs, open_segmenter(str(tiny_bundle), device="cpu"), progress=lambda f, m: seen.append((f, m)))
    assert summary.exit_code == 0 and len(summary.written) == 3
    assert all(isinstance(f, float) and isinstance(m, str) and 0 <= f <= 1 for f, m in seen) and seen[-1][0] == 1.0
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    # cancel after the first case: what was written is complete, nothing else was started
    jobs = validate_jobs(plan_jobs([scans], ["brain"], tmp_path / "cancelled")[0])
    done = []
    with pytest.raises(Cancelled):
        run_jobs(jobs, lambda: open_segmenter(str(tiny_bundle), device="cpu"), cancel=lambda: len(done) > 0,
                 on_outcome=done.append)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "cancelled").iterdir()) == ["c0.nii.gz", "c0.nii.gz.json"]
    assert temporary_files(tmp_path) == []


def test_jobs_are_validated_before_anything_runs(tmp_path):
    scan = small_volume(tmp_path / "in.nii.gz")
    ok = Job(scan, ["brain"], tmp_path / "a.nii.gz", "job 0")
    for bad, message in [
        (Job(scan, ["brain"], tmp_path / "a.nii.gz", "job 1"), "both write"),
        (Job(scan, [42], tmp_path / "b.nii.gz", "job 1"), "not text"),
        (Job(scan, ["brain"], scan, "job 1"), "is the input"),
        (Job(tmp_path / "none.nii.gz", ["brain"], tmp_path / "c.nii.gz", "job 1"), "does not exist"),
        (Job(scan, ["brain"], tmp_path / "c.txt", "job 1"), "must end in one of"),
    ]:
        with pytest.raises(RequestError, match=message) as info:
            validate_jobs([ok, bad])
        assert "job 1" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]
    assert Path(validate_jobs([ok])[0].output) == tmp_path / "a.nii.gz"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"fill_holes": None}, "fill_holes must be true or false"),
        ({"largest_only": "yes"}, "largest_only must be true or false"),
        ({"use_cache": 1}, "use_cache must be true or false"),
        ({"mask_threshold": 1.5}, "mask_threshold must be a number from 0 to 1"),
        ({"min_slices": 0}, "min_slices must be a whole number"),
    ],
)
def test_bad_segment_options_are_refused_naming_the_option(options, message):
    from TextSegmentLib.app import check_options

    with pytest.raises(RequestError, match=message):
        check_options(options)


def test_largest_only_may_be_left_to_the_model_card():
    from TextSegmentLib.app import check_options

    assert check_options({"largest_only": None}) == {"largest_only": None}
    assert check_options({"largest_only": True, "fill_holes": False}) == {"largest_only": True, "fill_holes": False}
