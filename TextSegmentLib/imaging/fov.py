"""Where a volume's field of view cuts through the body: the ends of its axes whose outermost slices hold tissue.

Example:
    >>> import numpy as np
    >>> a = np.zeros((10, 10, 10)); a[:3, 3:7, 3:7] = 1  # body in the lowest slices: cut there only
    >>> cut_ends(a, 0.5)
    ((True, False), (False, False), (False, False))
"""

from typing import Tuple

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


__all__ = ["CUT_FRACTION", "cut_ends"]
