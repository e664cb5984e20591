"""Outlier trimming (engine/trim.py): edge voxels unlike the segment's inside are taken off, for any contrast, and
nothing else changes. Real MRI for the engine test (Colin27 T1 at 2 mm and its AAL hippocampus, the embedded model)."""

import engine_volumes
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from TextSegmentLib.app import open_segmenter
from TextSegmentLib.engine.trim import MIN_INSIDE, trim_outliers

HIPPOCAMPUS_L = 37


def _slab(fluid: float, noise: float = 2.0, seed: int = 0):
    """A 'structure' of intensity 100 with fluid of intensity ``fluid`` beyond column 7, and a mask one column too
    wide (into the fluid)."""
    image = np.full((6, 12, 12), 100.0)
    image[:, :, 8:] = fluid
    image += np.random.default_rng(seed).normal(0, noise, image.shape)
    mask = np.zeros(image.shape, bool)
    mask[:, 1:9, 1:9] = True
    return image, mask


@pytest.mark.parametrize("fluid", [20.0, 220.0])  # dark fluid (T1, FLAIR) and bright fluid (T2)
def test_the_column_in_the_fluid_goes_and_nothing_else(fluid):
    image, mask = _slab(fluid)
    out = trim_outliers(image, mask, 2.5)
    wrong = mask.copy()
    wrong[:, :, :8] = False
    assert not (out & wrong).any()  # every voxel in the fluid is gone
    others = mask & ~wrong & ~out  # and of the rest only the noise's own tail (2.5 SD: about 1 %)
    assert others.sum() <= 0.03 * (mask & ~wrong).sum()
    assert (np.abs(image[others] - 100.0) > 2.0 * 2.0).all()


def test_it_never_adds_and_never_touches_the_inside():
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = tuple(int(n) for n in rng.integers(4, 16, size=3))
        image = rng.normal(100, rng.choice([1.0, 20.0]), shape) * (1 + (rng.random(shape) > 0.9) * 2)
        mask = ndimage.binary_dilation(rng.random(shape) > 0.93, iterations=int(rng.integers(1, 3)))
        sds = float(rng.choice([0.5, 2.5, 4.0]))
        out = trim_outliers(image, mask, sds)
        inside = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1))
        assert not (out & ~mask).any()
        if inside.sum() >= MIN_INSIDE:
            assert (out | ~inside).all()  # the inside stays


def test_nothing_is_trimmed_without_a_measure_or_with_it_off():
    image, mask = _slab(20.0)
    assert np.array_equal(trim_outliers(image, mask, 0.0), mask)
    assert np.array_equal(trim_outliers(np.full(image.shape, 7.0), mask, 2.5), mask)  # constant: no spread
    small = np.zeros(image.shape, bool)
    small[2:4, 2:4, 2:4] = True
    assert np.array_equal(trim_outliers(image, small, 2.5), small)  # too little inside to measure


@pytest.fixture(scope="module")
def colin_2mm():
    t1, labels = engine_volumes.colin_2mm()
    return t1, sitk.GetArrayFromImage(labels)


def test_a_shrunken_hippocampus_gives_a_smaller_segment(colin_2mm):
    """The hippocampus's outer voxels turned to fluid (an atrophy): with the card's trimming the segment is a subset of
    the untrimmed one, smaller, closer to the shrunken reference, and the input is not modified."""
    t1, labels = colin_2mm
    seg = open_segmenter("default", device="cpu")
    assert seg.card["vocabulary"] and any(e.get("trim_outliers") for e in seg.card["vocabulary"] if isinstance(e, dict))
    hippocampus = labels == HIPPOCAMPUS_L
    rim = hippocampus & ~ndimage.binary_erosion(hippocampus)
    array = sitk.GetArrayFromImage(t1)
    fluid = float(np.percentile(array[array > 0], 5))
    array[rim] = fluid
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(t1)
    before = array.copy()
    trimmed = seg.segment(image, ["left hippocampus"])
    plain = seg.segment(image, ["left hippocampus"], trim_outliers=0)
    a, b = trimmed.mask(0) > 0, plain.mask(0) > 0
    assert trimmed.segments[0].trim_outliers == 2.5 and plain.segments[0].trim_outliers == 0.0  # the report says
    assert trimmed.to_dict()["segments"][0]["trim_outliers"] == 2.5
    assert np.array_equal(sitk.GetArrayViewFromImage(image), before)
    assert not (a & ~b).any() and a.sum() < b.sum()
    shrunk = hippocampus & ~rim

    def dice(x, y):
        return 2.0 * float((x & y).sum()) / float(x.sum() + y.sum())

    assert dice(a, shrunk) > dice(b, shrunk)


@pytest.mark.parametrize("value", [-1, "yes", float("inf"), True])
def test_trim_outliers_must_be_a_number_at_least_zero(value):
    from TextSegmentLib.engine.options import check_options

    with pytest.raises(ValueError, match="trim_outliers"):
        check_options({"trim_outliers": value})
