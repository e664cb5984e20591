"""Volumes for the engine tests: a crop of a real brain MRI, a synthetic CT, and reoriented copies of any image."""

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

CH2 = "/usr/share/mricron/templates/ch2.nii.gz"
AAL = "/usr/share/mricron/templates/aal.nii.gz"


def colin_2mm():
    """(T1, AAL labels) of Colin27 resampled onto a 2 mm grid of the same direction (real MRI, about 91^3 voxels);
    fails the test with what to install when the Debian mricron-data files are missing."""
    import pytest

    if not Path(CH2).is_file():
        pytest.fail("Colin27 (Debian mricron-data) is missing: bash scripts/setup.sh installs it")
    image = sitk.ReadImage(CH2)
    grid = sitk.Image([int(n // 2) for n in image.GetSize()], sitk.sitkFloat32)
    grid.SetSpacing([2.0] * 3)
    grid.SetDirection(image.GetDirection())
    grid.SetOrigin(image.TransformContinuousIndexToPhysicalPoint([0.5, 0.5, 0.5]))
    t1 = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    labels = sitk.Resample(sitk.ReadImage(AAL), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return t1, labels


def brain_crop(size=(40, 48, 12)) -> sitk.Image:
    """A small crop of the Colin27 T1 (real MRI, 1 mm, stored RAS) around the centre."""
    image = sitk.ReadImage(CH2)
    full = image.GetSize()
    start = [(f - s) // 2 for f, s in zip(full, size)]
    return image[start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]]


def synthetic_ct(shape=(10, 40, 36), spacing=(0.8, 0.7, 2.5)) -> sitk.Image:
    """A body-like CT in HU: air, soft tissue ellipse, two lungs, a bone ring; LPS identity direction."""
    k, j, i = shape
    zz, yy, xx = np.meshgrid(np.arange(k), np.linspace(-1, 1, j), np.linspace(-1, 1, i), indexing="ij")
    arr = np.full(shape, -1000, np.int16)
    body = (xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1
    arr[body] = 40
    arr[body & ((xx / 0.9) ** 2 + (yy / 0.7) ** 2 > 0.8)] = 800
    arr[((xx - 0.4) / 0.25) ** 2 + (yy / 0.35) ** 2 < 1] = -800
    arr[((xx + 0.4) / 0.25) ** 2 + (yy / 0.35) ** 2 < 1] = -800
    arr = arr + (np.arange(k)[:, None, None] % 3).astype(np.int16)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing)
    image.SetOrigin((-12.0, 30.0, -100.0))
    return image


def reoriented(image: sitk.Image, perm: Sequence[int], flips: Sequence[bool]) -> sitk.Image:
    """The same physical volume stored with index axis a = old axis ``perm[a]`` (reversed when ``flips[a]``)."""
    arr = sitk.GetArrayFromImage(image)  # (k, j, i)
    # numpy axis of index axis a is 2 - a
    new = np.transpose(arr, [2 - perm[2], 2 - perm[1], 2 - perm[0]])
    for a, flip in enumerate(flips):
        if flip:
            new = np.flip(new, axis=2 - a)
    size = image.GetSize()
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    sp = image.GetSpacing()
    cols = [d[:, perm[a]] * (-1 if flips[a] else 1) for a in range(3)]
    first = [0, 0, 0]
    for a in range(3):
        first[perm[a]] = size[perm[a]] - 1 if flips[a] else 0
    out = sitk.GetImageFromArray(np.ascontiguousarray(new))
    out.SetSpacing([sp[perm[a]] for a in range(3)])
    out.SetDirection(np.stack(cols, axis=1).ravel().tolist())
    out.SetOrigin(image.TransformIndexToPhysicalPoint(first))
    return out


def rotated(image: sitk.Image, degrees: float) -> sitk.Image:
    """The same voxels with the direction rotated about the superior axis (an oblique acquisition)."""
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    out = sitk.Image(image)
    out.SetDirection((rot @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    return out


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing())
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )
