"""Where a refinement's slice, box corners and points lie: user coordinates (input voxels or physical LPS mm) ->
the slice of a plane view and (row, col) on it. The volume is read on the input's own grid (a result segmented on a
resampled grid is carried onto it before it is refined: engine/rebase.py)."""

from typing import Any, List, Sequence, Tuple

import numpy as np

from .io import InputError
from .volume import AXIS_NORMAL, PreparedVolume

Coords = Sequence[float]


def view_point(volume: PreparedVolume, plane: str, point: Coords, coords: str) -> Tuple[float, float, float]:
    """A 3D point (input voxel, or physical with ``coords="physical"``) -> (slice, row, col) of ``plane``'s view."""
    ijk = volume.physical_to_index(point) if coords == "physical" else point
    return volume.input_index_to_view(ijk, plane)


def slice_of(volume: PreparedVolume, plane: str, slice_index: Any, coords: str) -> int:
    """The view slice of ``plane`` that an int (index along the input's axis nearest the normal) or a 3D point
    names; :class:`InputError` when it lies outside the volume."""
    n = volume.view(plane).num_slices
    if isinstance(slice_index, (int, np.integer)):
        c = AXIS_NORMAL[plane]
        p = volume.reorientation.permutation[c]
        size = volume.image.GetSize()[p]
        if not 0 <= int(slice_index) < size:
            raise InputError(f"slice_index {slice_index} is outside 0..{size - 1}")
        return size - 1 - int(slice_index) if volume.reorientation.flips[c] else int(slice_index)
    s = int(round(view_point(volume, plane, slice_index, coords)[0]))
    if not 0 <= s < n:
        raise InputError(f"slice {slice_index} lies outside the volume")
    return s


def in_plane(volume: PreparedVolume, plane: str, s: int, pair: Coords, coords: str) -> Tuple[float, float]:
    """A 2-value in-plane coordinate (or a 3D point) -> (row, col) on slice ``s`` of ``plane``."""
    if len(pair) == 3:
        _, r, c = view_point(volume, plane, pair, coords)
        return r, c
    normal = AXIS_NORMAL[plane]
    if coords == "physical":
        centre = _centre_index(volume, plane, s)
        phys = list(volume.image.TransformContinuousIndexToPhysicalPoint(centre))
        axes = [a for a in range(3) if a != normal]
    else:
        phys = list(_centre_index(volume, plane, s))
        p = volume.reorientation.permutation[normal]
        axes = [a for a in range(3) if a != p]
    phys[axes[0]], phys[axes[1]] = float(pair[0]), float(pair[1])
    _, r, c = view_point(volume, plane, phys, coords)
    return r, c


def _centre_index(volume: PreparedVolume, plane: str, s: int) -> List[float]:
    """The input voxel index at the centre of slice ``s`` of ``plane``."""
    size = volume.image.GetSize()
    normal = AXIS_NORMAL[plane]
    p = volume.reorientation.permutation[normal]
    ijk = [(n - 1) / 2.0 for n in size]
    ijk[p] = float(size[p] - 1 - s if volume.reorientation.flips[normal] else s)
    return ijk


__all__ = ["Coords", "in_plane", "slice_of", "view_point"]
