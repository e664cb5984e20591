"""Where a volume's field of view cuts through the body: the ends of its axes whose outermost slices hold tissue.

Example:
    >>> import numpy as np
    >>> a = np.zeros((10, 10, 10)); a[:3, 3:7, 3:7] = 1  # body in the lowest slices: cut there only
    >>> cut_ends(a, 0.5)
    ((True, False), (False, False), (False, False))
"""

from typing import List, Tuple

import numpy as np

#: an end of an axis cuts through the body when more than this fraction of its two outermost slices is foreground
CUT_FRACTION = 0.1


def cut_ends(array: np.ndarray, foreground: float) -> Tuple[Tuple[bool, bool], ...]:
    """Per array axis, whether each end's outermost two slices hold more than ``CUT_FRACTION`` foreground (values
    above ``foreground``): there the field of view cuts through the body, not through the air around it."""
    out = []
    for axis in range(array.ndim):
        ends = []
        for part in (slice(0, 2), slice(-2, None)):
            face = np.take(array, range(array.shape[axis])[part], axis=axis)
            ends.append(bool((face > foreground).mean() > CUT_FRACTION))
        out.append(tuple(ends))
    return tuple(out)  # type: ignore[return-value]


#: the ends of the canonical (S, P, L) axes as a reader names them (low end, high end)
END_NAMES = (("bottom", "top"), ("front", "back"), ("right side", "left side"))


def cut_edges_reached(mask: np.ndarray, cuts: Tuple[Tuple[bool, bool], ...]) -> List[str]:
    """The names (:data:`END_NAMES`) of the ends of a canonical ``(S, P, L)`` mask's volume that cut through the body
    (``cuts``, as :func:`cut_ends` gives them) and that the mask reaches (it holds voxels in the outermost slice).

    Example:
        >>> m = np.zeros((10, 10, 10), bool); m[7:, 4:6, 4:6] = True
        >>> cut_edges_reached(m, ((True, True), (False, False), (False, False)))
        ['top']
    """
    out = []
    for axis in range(3):
        for end, index in ((0, 0), (1, mask.shape[axis] - 1)):
            if cuts[axis][end] and mask.shape[axis] and np.take(mask, index, axis=axis).any():
                out.append(END_NAMES[axis][end])
    return out


__all__ = ["CUT_FRACTION", "END_NAMES", "cut_edges_reached", "cut_ends"]
