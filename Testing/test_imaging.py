"""Orientation, intensity and resizing helpers shared by inference and training."""

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from TextSegmentLib.imaging import (
    CT_WINDOWS,
    detect_ct,
    fit_slices,
    from_canonical,
    normalize_ct,
    normalize_mr,
    plan_fit,
    reorientation_for,
    to_canonical,
)


def _directions():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            d = np.zeros((3, 3))
            for col, row in enumerate(perm):
                d[row, col] = signs[col]
            yield d


@pytest.mark.parametrize("direction", list(_directions())[::3])
def test_canonical_array_is_lps_in_physical_space(direction):
    """Every canonical voxel step goes Left, Posterior, Superior, whatever the stored orientation."""
    img = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    img.SetDirection(direction.flatten().tolist())
    img.SetSpacing((1.0, 2.0, 3.0))
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(6, 5, 4)
    r = reorientation_for(img.GetDirection())
    can = to_canonical(arr, r)
    np.testing.assert_array_equal(from_canonical(can, r), arr)
    # voxel value -> physical point, via the input geometry
    lookup = {}
    for k, j, i in itertools.product(range(6), range(5), range(4)):
        lookup[arr[k, j, i]] = np.array(img.TransformIndexToPhysicalPoint((i, j, k)))
    p0 = lookup[can[0, 0, 0]]
    assert lookup[can[0, 0, 1]][0] > p0[0]  # +x of canonical = patient left (LPS x grows)
    assert lookup[can[0, 1, 0]][1] > p0[1]  # +y = posterior
    assert lookup[can[1, 0, 0]][2] > p0[2]  # +z = superior
    spacing = r.canonical_spacing(img.GetSpacing())
    assert np.isclose(np.linalg.norm(lookup[can[0, 0, 1]] - p0), spacing[0])


def test_oblique_direction_uses_nearest_axis_and_reports_angle():
    a = np.radians(15)
    d = [np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1]
    r = reorientation_for(d)
    assert r.permutation == (0, 1, 2) and not any(r.flips)
    assert 14.9 < r.oblique_degrees < 15.1


def test_ct_detection_and_windows():
    ct = np.full((8, 8, 8), -1000.0)
    ct[2:6] = 40
    assert detect_ct(ct)
    assert not detect_ct(np.random.default_rng(0).uniform(0, 800, (8, 8, 8)))
    assert not detect_ct(ct, {"0008|0060": "MR"})
    soft = normalize_ct(np.array([-160.0, 40.0, 240.0, 1000.0]), CT_WINDOWS["soft_tissue"])
    np.testing.assert_allclose(soft, [0.0, 127.5, 255.0, 255.0])
    assert soft.dtype == np.float32


def test_mr_percentile_normalisation():
    x = np.random.default_rng(1).normal(500, 100, (20, 20, 20))
    x[0, 0, 0] = 1e6  # an outlier does not squash the range
    out = normalize_mr(x)
    assert out.min() == 0 and out.max() == 255
    assert 100 < np.median(out) < 155


def test_fit_preserves_physical_aspect_and_maps_back():
    fit = plan_fit(100, 200, 2.0, 0.5, 64)  # 200 mm tall, 100 mm wide
    assert (fit.h, fit.w) == (64, 32) and fit.left == 16 and fit.top == 0
    slices = np.zeros((1, 100, 200), np.float32)
    slices[0, 40:60, 90:110] = 255
    model_in = fit_slices(slices, fit)
    assert model_in.shape == (1, 64, 64)
    assert model_in[0, :, :16].abs().max() == 0  # padding
    y, x = fit.to_model(np.array([50.0]), np.array([100.0]))
    assert model_in[0, int(round(y[0])), int(round(x[0]))] > 200
    rows, cols = fit.from_model(y, x)
    np.testing.assert_allclose([rows[0], cols[0]], [50.0, 100.0])
    back = fit.to_slices(model_in)
    assert back.shape == (1, 100, 200)
    got, want = back[0] > 127, torch.as_tensor(slices[0] > 127)
    assert (got & want).sum() / (got | want).sum() > 0.85


def test_a_padded_fit_shows_the_mirror_image_beyond_the_cut_and_maps_back_to_the_slice_alone():
    """A slice whose field of view ends at its top row goes on with its mirror image there; coordinates, the
    model-resolution maps brought back and the slice itself are those of the unpadded slice."""
    plain = plan_fit(60, 120, 1.0, 1.0, 120)
    fit = plan_fit(60, 120, 1.0, 1.0, 120, pad=(30, 0, 0, 0))
    assert (plain.h, fit.h, fit.w) == (60, 90, 120) and fit.padded_height == 90
    slices = np.zeros((1, 60, 120), np.float32)
    slices[0, 0:10, 50:70] = 200.0  # a structure the top edge cuts
    slices[0, 40:50, 20:30] = 100.0
    model_in = fit_slices(slices, fit)[0]
    y, x = fit.to_model(np.array([0.0, 45.0]), np.array([60.0, 25.0]))
    assert model_in[int(round(y[0])), int(round(x[0]))] == pytest.approx(200.0, abs=1.0)
    assert model_in[int(round(y[1])), int(round(x[1]))] == pytest.approx(100.0, abs=1.0)
    above = model_in[fit.top : int(round(y[0])), :]  # the 30 rows beyond the cut: the cut structure, mirrored
    assert above.shape[0] == 30 and float(above[-10:, 60].min()) == pytest.approx(200.0, abs=1.0)
    assert float(above[:, 25].max()) == 0.0  # the lower structure is 40 mm away: not in the 30 mm mirrored
    rows, cols = fit.from_model(y, x)
    np.testing.assert_allclose(rows, [0.0, 45.0], atol=1e-9)
    np.testing.assert_allclose(cols, [60.0, 25.0], atol=1e-9)
    back = fit.to_slices(fit_slices(slices, fit)[None][0])
    assert back.shape == (1, 60, 120)
    np.testing.assert_allclose(back.numpy(), slices, atol=1e-3)
