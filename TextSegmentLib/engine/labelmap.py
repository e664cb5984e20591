"""Segments -> labelmaps: which segment is drawn where prompts overlap, what stays visible, and .seg.nrrd layers.

A labelmap holds one label per voxel, so where two prompts' segments overlap only one can be drawn. By default the
smaller segment is drawn over the larger one ("left hippocampus" over "brain"): the larger keeps most of its voxels,
and nothing found is ever invisible. ``overlap="confident"`` draws the more confident segment on top instead,
``overlap="first"`` the earlier prompt. :func:`visible_voxels` counts what each label keeps, so reports can say when
a segment is partly or fully hidden. A ``.seg.nrrd`` keeps every segment whole: :func:`assign_layers` puts
overlapping segments into separate layers, non-overlapping ones share a layer.

Example:
    >>> import numpy as np
    >>> big, small = np.ones((2, 3, 3), bool), np.zeros((2, 3, 3), bool)
    >>> small[0, 1, 1] = True
    >>> labels = compose([big, small], paint_order([big.sum(), small.sum()], [0.9, 0.5]))
    >>> int(labels[0, 1, 1]), visible_voxels(labels, 2).tolist(), assign_layers([big, small])
    (2, [17, 1], [0, 1])
"""

from typing import List, Sequence

import numpy as np

#: what is drawn on top where segments overlap in a labelmap
OVERLAP_ORDERS = ("smaller", "confident", "first")
DEFAULT_OVERLAP = "smaller"


def check_overlap(order: str) -> str:
    """Validate an overlap order name."""
    if order not in OVERLAP_ORDERS:
        raise ValueError(f"overlap must be one of {OVERLAP_ORDERS}, got {order!r}")
    return order


def paint_order(sizes: Sequence[float], confidences: Sequence[float], order: str = DEFAULT_OVERLAP) -> List[int]:
    """Segment indices in the order they are painted: the last one painted wins an overlap.

    ``smaller``: larger segments first (ties: the less confident, then the later prompt first); ``confident``: less
    confident first (ties: the later prompt first); ``first``: the last prompt first, so the first prompt wins.
    """
    check_overlap(order)
    n = len(sizes)
    if order == "smaller":
        return sorted(range(n), key=lambda i: (-float(sizes[i]), float(confidences[i]), -i))
    if order == "confident":
        return sorted(range(n), key=lambda i: (float(confidences[i]), -i))
    return list(reversed(range(n)))


def label_dtype(count: int) -> type:
    """uint8 for up to 255 labels, uint16 beyond."""
    return np.uint8 if count < 256 else np.uint16


def compose(masks: Sequence[np.ndarray], order: Sequence[int]) -> np.ndarray:
    """One labelmap from boolean masks of one shape: label i + 1 for mask i, painted in ``order``."""
    if not masks:
        return np.zeros((0, 0, 0), np.uint8)
    labels = np.zeros(masks[0].shape, dtype=label_dtype(len(masks)))
    for i in order:
        labels[masks[i]] = i + 1
    return labels


def visible_voxels(labels: np.ndarray, count: int) -> np.ndarray:
    """Voxels of each label 1..count in a labelmap (index i for label i + 1)."""
    return np.bincount(labels.ravel(), minlength=count + 1)[1 : count + 1].astype(np.int64)


def assign_layers(masks: Sequence[np.ndarray]) -> List[int]:
    """A layer per mask: each goes into the first layer none of whose masks it overlaps (greedy, prompt order)."""
    layers: List[np.ndarray] = []
    out: List[int] = []
    for mask in masks:
        for n, used in enumerate(layers):
            if not np.logical_and(used, mask).any():
                used |= mask
                out.append(n)
                break
        else:
            layers.append(mask.copy())
            out.append(len(layers) - 1)
    return out
