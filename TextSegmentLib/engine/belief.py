"""The model's belief behind a segment: the fused three-view probability in the box where it was computed (float16),
kept with each prompt's result so that a click can act in 3D without decoding again.

Example:
    >>> import numpy as np
    >>> b = Belief(((1, 3), (0, 2), (0, 2)), np.full((2, 2, 2), 0.75, np.float16))
    >>> b.crop(((0, 4), (0, 2), (0, 2)))[:, 0, 0].tolist()
    [0.0, 0.75, 0.75, 0.0]
    >>> union([b, None]).box == b.box
    True
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

Box = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]  # canonical (lo, hi) per axis, hi exclusive


@dataclass(frozen=True)
class Belief:
    """Fused probability ``prob`` (float16 as a result keeps it, float32 while fusing) of the canonical block ``box``;
    zero outside it."""

    box: Box
    prob: np.ndarray

    def crop(self, region: Box) -> np.ndarray:
        """The probability (float32) on the canonical block ``region``, zero where the box does not reach."""
        out = np.zeros(tuple(hi - lo for lo, hi in region), dtype=np.float32)
        inter = [(max(a[0], b[0]), min(a[1], b[1])) for a, b in zip(region, self.box)]
        if any(lo >= hi for lo, hi in inter):
            return out
        dst = tuple(slice(lo - r[0], hi - r[0]) for (lo, hi), r in zip(inter, region))
        src = tuple(slice(lo - b[0], hi - b[0]) for (lo, hi), b in zip(inter, self.box))
        out[dst] = self.prob[src]
        return out


def _joint_box(beliefs: Sequence[Belief]) -> Box:
    """The smallest box holding every belief's box."""
    lows = [min(b.box[a][0] for b in beliefs) for a in range(3)]
    highs = [max(b.box[a][1] for b in beliefs) for a in range(3)]
    return tuple(zip(lows, highs))  # type: ignore[return-value]


def mirrored(belief: Optional[Belief], width: int) -> Optional[Belief]:
    """A belief of a left-right mirrored volume (``width`` voxels along the canonical L axis) on the volume's own grid.

    Example:
        >>> b = Belief(((0, 1), (0, 1), (1, 3)), np.array([[[0.25, 0.75]]], np.float16))
        >>> m = mirrored(b, 4)
        >>> m.box[2], m.crop(((0, 1), (0, 1), (0, 4)))[0, 0].tolist()
        ((1, 3), [0.0, 0.75, 0.25, 0.0])
    """
    if belief is None:
        return None
    (s, p, (lo, hi)) = belief.box
    return Belief((s, p, (width - hi, width - lo)), np.ascontiguousarray(belief.prob[:, :, ::-1]))


def mean(a: Optional[Belief], b: Optional[Belief]) -> Optional[Belief]:
    """The voxelwise mean of two beliefs on their joint box, float32 (a missing one counts as zero everywhere).

    Example:
        >>> a = Belief(((0, 1), (0, 1), (0, 2)), np.array([[[1.0, 0.5]]], np.float16))
        >>> mean(a, None).prob.tolist(), mean(a, a).prob.tolist()
        ([[[0.5, 0.25]]], [[[1.0, 0.5]]])
    """
    found = [x for x in (a, b) if x is not None]
    if not found:
        return None
    box = _joint_box(found)
    total = sum(x.crop(box) for x in found)
    return Belief(box, (total / 2.0).astype(np.float32))  # type: ignore[arg-type]


def union(beliefs: Sequence[Optional[Belief]]) -> Optional[Belief]:
    """The voxelwise maximum of several beliefs (the parts of "both sides" or a group) on their joint box."""
    found = [b for b in beliefs if b is not None]
    if len(found) <= 1:
        return found[0] if found else None
    box = _joint_box(found)
    prob = np.maximum.reduce([b.crop(box) for b in found]).astype(np.float16)  # type: ignore[arg-type]
    return Belief(box, prob)  # type: ignore[arg-type]


__all__ = ["Belief", "mean", "mirrored", "union"]
