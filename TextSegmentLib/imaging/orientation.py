"""Reorientation to one canonical anatomical orientation, and back, from the direction cosines.

Canonical: ITK/DICOM **LPS**: index axis i increases towards patient Left, j towards Posterior, k towards Superior.
As a numpy array (SimpleITK order) that is ``[k, j, i]`` = ``[inferior->superior, anterior->posterior,
right->left]``: an axial slice ``a[k]`` shows the patient in radiological convention (patient's right on the
image's left, anterior at the top). Whatever the file's orientation, "left" is then the patient's left.

Oblique directions use the **nearest axis** (no resampling): each index axis is assigned to the anatomical axis it is
closest to, so voxels are only permuted and flipped and results map back exactly; the angle to the nearest axis is
reported so callers can warn when it is large.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Reorientation:
    """Canonical axis c (0=L, 1=P, 2=S) is input index axis ``permutation[c]``, flipped when ``flips[c]``."""

    permutation: Tuple[int, int, int]
    flips: Tuple[bool, bool, bool]
    oblique_degrees: float

    def canonical_spacing(self, spacing_xyz: Sequence[float]) -> Tuple[float, float, float]:
        """Spacing (x, y, z) of the canonical grid."""
        return tuple(float(spacing_xyz[p]) for p in self.permutation)  # type: ignore[return-value]


def reorientation_for(direction: Sequence[float]) -> Reorientation:
    """Nearest-axis reorientation for a 3x3 direction matrix (row-major, columns = index axes in LPS).

    Example:
        >>> r = reorientation_for([-1, 0, 0, 0, -1, 0, 0, 0, 1])  # RAS-stored volume
        >>> r.permutation, r.flips
        ((0, 1, 2), (True, True, False))
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[c, p[c]]) for c in range(3)))
    flips = tuple(bool(d[c, best[c]] < 0) for c in range(3))
    cosines = [abs(d[c, best[c]]) / max(np.linalg.norm(d[:, best[c]]), 1e-12) for c in range(3)]
    angle = max(math.degrees(math.acos(min(1.0, c))) for c in cosines)
    return Reorientation(tuple(int(p) for p in best), flips, angle)  # type: ignore[arg-type]


def to_canonical(array: np.ndarray, reorientation: Reorientation) -> np.ndarray:
    """Input array in SimpleITK order (k, j, i, ...) -> canonical array (S, P, L, ...). A view when possible."""
    perm = reorientation.permutation
    axes = [2 - perm[2], 2 - perm[1], 2 - perm[0]] + list(range(3, array.ndim))
    out = np.transpose(array, axes)
    for c, flip in enumerate(reorientation.flips):
        if flip:
            out = np.flip(out, axis=2 - c)
    return out


def from_canonical(array: np.ndarray, reorientation: Reorientation) -> np.ndarray:
    """Exact inverse of :func:`to_canonical`."""
    out = array
    for c, flip in enumerate(reorientation.flips):
        if flip:
            out = np.flip(out, axis=2 - c)
    perm = reorientation.permutation
    axes = [2 - perm[2], 2 - perm[1], 2 - perm[0]]
    inverse = [axes.index(a) for a in range(3)] + list(range(3, array.ndim))
    return np.transpose(out, inverse)
