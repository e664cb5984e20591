"""Mirror averaging: the volume is also segmented mirrored left-right with left and right swapped in the prompt, and
the two fused probabilities are averaged. Real MRI (Colin27 T1 at 2 mm), the embedded default model."""

import json
from pathlib import Path

import engine_volumes
import numpy as np
import pytest
import SimpleITK as sitk

from TextSegmentLib.app import open_segmenter
from TextSegmentLib.cli.main import main as cli_main
from TextSegmentLib.engine.options import check_options
from TextSegmentLib.engine.volume import PreparedVolume


@pytest.fixture(scope="module")
def colin_2mm() -> sitk.Image:
    return engine_volumes.colin_2mm()[0]


@pytest.fixture(scope="module")
def segmenter():
    return open_segmenter("default", device="cpu", precision="float32")


def _mirror(image: sitk.Image) -> sitk.Image:
    """The same head mirrored left-right on the same grid (the grid's first axis runs left-right)."""
    assert abs(image.GetDirection()[0]) == 1.0
    out = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)[:, :, ::-1]))
    out.CopyInformation(image)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / max(1.0, float(a.sum() + b.sum()))


def test_a_mirrored_volume_shows_the_same_sagittal_slices_in_reverse(colin_2mm):
    volume = PreparedVolume(colin_2mm, {}, image_size=64)
    mirror = volume.mirrored()
    assert mirror is volume.mirrored()  # built once
    assert np.array_equal(mirror.canonical, volume.canonical[:, :, ::-1])
    assert np.array_equal(mirror.stack, volume.stack[:, :, ::-1])  # the primary (axial) plane's slices too
    assert mirror.canonical_hash != volume.canonical_hash and mirror.mr_range() == volume.mr_range()
    n = volume.view("sagittal").num_slices
    a = volume.view("sagittal").model_inputs([0, 5, n - 1], None)
    b = mirror.view("sagittal").model_inputs([n - 1, n - 6, 0], None)
    assert np.array_equal(a.numpy(), b.numpy())
    axial = volume.view("axial").model_inputs([40], None).numpy()
    assert not np.array_equal(axial, mirror.view("axial").model_inputs([40], None).numpy())
    assert mirror.cut_ends[2] == volume.cut_ends[2][::-1]


def test_mirror_averaging_makes_the_two_sides_agree(colin_2mm, segmenter):
    """ "left putamen" on the head and "right putamen" on its mirror image must be mirror images of each other: with
    mirror averaging nearly voxel for voxel, more than without; each lies on the side asked for."""
    mirrored = _mirror(colin_2mm)
    before = sitk.GetArrayFromImage(colin_2mm).copy()
    agreement = {}
    for on in (True, False):
        a = segmenter.segment(colin_2mm, ["left putamen", "right hippocampus"], mirror=on)
        b = segmenter.segment(mirrored, ["right putamen", "left hippocampus"], mirror=on)
        assert a.info["options"]["mirror"] is on
        agreement[on] = [_dice(a.mask(i), b.mask(i)[:, :, ::-1]) for i in range(2)]
        for r in (a, b):
            sides = [s.laterality_check for s in r.segments]
            assert all(s.found for s in r.segments) and sides == ["ok", "ok"], sides
    assert np.array_equal(sitk.GetArrayViewFromImage(colin_2mm), before)
    assert min(agreement[True]) > 0.95, agreement
    assert np.mean(agreement[True]) > np.mean(agreement[False]) + 0.01, agreement


def test_a_prompt_read_as_typed_is_segmented_once(colin_2mm, segmenter):
    """A text that is not a vocabulary name cannot be mirrored reliably ("lt" is a side only to the parser)."""
    a = segmenter.segment(colin_2mm, ["lt putamen"], prompt_text="raw", mirror=True)
    b = segmenter.segment(colin_2mm, ["lt putamen"], prompt_text="raw", mirror=False)
    assert np.array_equal(a.mask(0), b.mask(0))


def test_the_default_follows_the_card_and_the_cli_can_turn_it_off(colin_2mm, segmenter, tmp_path):
    assert segmenter.card["input"]["mirror"] is True
    source = tmp_path / "colin.nii.gz"
    sitk.WriteImage(colin_2mm, str(source))
    for flags, expected in (([], True), (["--no-mirror"], False)):
        out = tmp_path / f"out{len(flags)}.nii.gz"
        argv = ["segment", str(source), "--prompt", "left thalamus", "--output", str(out), "--no-progress", *flags]
        assert cli_main(argv) == 0
        report = json.loads(Path(str(out) + ".json").read_text())
        assert report["options"]["mirror"] is expected


@pytest.mark.parametrize("value", ["yes", 1, 0.5])
def test_mirror_must_be_true_false_or_none(value):
    with pytest.raises(ValueError, match="mirror"):
        check_options({"mirror": value})


def test_preparing_a_volume_encodes_what_the_mirror_needs(colin_2mm):
    """Precompute (what Slicer runs on selecting a volume) encodes the mirror's axial and coronal slices too; the
    first prompt then encodes nothing."""
    seg = open_segmenter("default", device="cpu")
    done = seg.precompute(colin_2mm)
    assert set(done) == {"axial", "coronal", "sagittal", "mirrored axial", "mirrored coronal"}
    assert done["mirrored axial"] == done["axial"] > 0 and done["mirrored coronal"] == done["coronal"] > 0
    encoded = {key: int(stored.have.sum()) for key, stored in seg.cache._items.items()}
    result = seg.segment(colin_2mm, ["left thalamus"])
    assert result.segments[0].found
    assert {key: int(stored.have.sum()) for key, stored in seg.cache._items.items()} == encoded
