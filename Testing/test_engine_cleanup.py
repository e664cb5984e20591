"""3D clean-up: the bounding-box shortcut gives exactly the whole-volume answer; the rules themselves."""

import numpy as np
import pytest
from scipy import ndimage

from TextSegmentLib.engine.decode import cleanup_3d, fill_holes_2d


def reference(mask, voxel_ml, min_component_ml, min_slices, fill_holes, largest_only, min_fraction=0.0):
    if fill_holes:
        mask = fill_holes_2d(mask.copy())
    min_slices = max(1, min(int(min_slices), mask.shape[0]))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = np.zeros(count + 1, bool)
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        keep[lab] = sizes[lab] * voxel_ml >= min_component_ml and sl[0].stop - sl[0].start >= min_slices
    if min_fraction > 0 and keep[1:].any():
        largest = max(sizes[lab] for lab in range(1, count + 1) if keep[lab])
        keep = np.array([k and sizes[lab] >= min_fraction * largest for lab, k in enumerate(keep)])
    if largest_only and keep[1:].any():
        best = int(np.argmax(np.where(keep, sizes, -1)))
        keep[:] = False
        keep[best] = True
    keep[0] = False
    return keep[labels]


@pytest.mark.parametrize("seed", range(40))
def test_cleanup_equals_whole_volume_reference(seed):
    rng = np.random.default_rng(seed)
    m = rng.random((12, 30, 30)) > rng.uniform(0.5, 0.95)
    m[:, : rng.integers(0, 8)] = False
    m[: rng.integers(0, 5)] = False
    m[..., -rng.integers(1, 8) :] = False
    kw = dict(
        voxel_ml=0.01,
        min_component_ml=float(rng.choice([0, 0.05, 0.2])),
        min_slices=int(rng.integers(1, 14)),
        fill_holes=bool(rng.integers(2)),
        largest_only=bool(rng.integers(2)),
        min_fraction=float(rng.choice([0, 0.05, 0.3, 1.0])),
    )
    assert np.array_equal(cleanup_3d(m, **kw), reference(m, **kw))


def test_cleanup_rules():
    m = np.zeros((6, 10, 10), bool)
    m[1:5, 2:8, 2:8] = True
    m[2:4, 4, 4] = False  # a hole inside: filled
    m[0, 0, 0] = True  # one-slice speck: removed
    out = cleanup_3d(m, voxel_ml=0.001, min_slices=2)
    assert out[2, 4, 4] and not out[0, 0, 0] and out.sum() == 4 * 36
    assert not cleanup_3d(m, voxel_ml=0.001, min_component_ml=1.0).any()  # 0.144 ml < 1 ml


def test_islands_much_smaller_than_the_largest_component_are_removed():
    m = np.zeros((10, 30, 30), bool)
    m[1:9, 2:10, 2:10] = True  # 512 voxels
    m[1:9, 20:28, 2:10] = True  # its mirror image (a bilateral group): 512
    m[2:5, 20:23, 20:23] = True  # an island: 27 voxels, 5 % of the largest
    kw = dict(voxel_ml=0.001, min_slices=2, fill_holes=False)
    assert cleanup_3d(m, **kw).sum() == 1051  # off by default
    out = cleanup_3d(m, min_fraction=0.1, **kw)
    assert out.sum() == 1024 and not out[3, 21, 21]  # both halves kept, the island gone
    assert cleanup_3d(m, min_fraction=0.05, **kw).sum() == 1051  # 27 >= 0.05 * 512 = 25.6
    assert cleanup_3d(m, min_fraction=1.0, **kw).sum() == 1024  # components as large as the largest stay


@pytest.mark.parametrize("seed", range(10))
def test_fill_holes_is_per_slice_2d(seed):
    """One call over the stack equals filling every slice on its own (4-connected background, first and last too)."""
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((6, 30, 28)) > 0.45, np.ones((1, 2, 2), bool))
    expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    subset = [0, 2, 5]
    partial = mask.copy()
    fill_holes_2d(partial, subset)
    assert np.array_equal(fill_holes_2d(mask.copy()), expected)
    assert np.array_equal(partial[subset], expected[subset]) and np.array_equal(partial[[1, 3, 4]], mask[[1, 3, 4]])


@pytest.mark.parametrize("seed", range(6))
def test_cleanup_of_fuzzed_masks_equals_the_reference_and_leaves_its_input(seed):
    """Random masks (many small components, some dropped): the clean-up, which clears dropped components inside
    their own boxes, equals the plain reference, and never writes into its input."""
    rng = np.random.default_rng(seed)
    mask = rng.random((12, 20, 18)) < rng.uniform(0.05, 0.5)
    min_ml, min_slices = float(rng.choice([0, 0.005, 0.02])), int(rng.integers(1, 4))
    for largest in (False, True):
        before = mask.copy()
        out = cleanup_3d(mask, 0.001, min_ml, min_slices, False, largest, 0.2)
        assert np.array_equal(mask, before) and out is not mask
        assert np.array_equal(out, reference(mask, 0.001, min_ml, min_slices, False, largest, 0.2)), (seed, largest)
