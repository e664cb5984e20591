"""A result segmented on a resampled grid (an oblique grid conformed onto the anatomical axes, a turned head on its
own axes) carried onto the input's own grid before its first refinement, so that a box or click drawn on a slice of
the input (as Slicer shows an oblique volume: its slice views turned to the volume's planes) refines exactly that
slice, and undo gives back exactly what the text segmentation gave.

What moves: each prompt's mask (exactly the mask :meth:`Result.mask` returns: the resampling back onto the input's grid
is the one the labelmap is made with), its belief (the fused probability, resampled linearly: 3D clicks act on it),
and each slice's presence (the nearest resampled slice's, for the confidence). Nothing is decoded again.
"""

from typing import Tuple

import numpy as np
import torch

from ..imaging.conform import values_to_input
from ..imaging.orientation import from_canonical, to_canonical
from .belief import Belief
from .volume import AXIS_NORMAL, PreparedVolume

#: belief below this is dropped from the carried belief's box (a + click adds nothing below 0.05 anyway)
BELIEF_FLOOR = 0.01


def input_grid_volume(volume: PreparedVolume) -> PreparedVolume:
    """The input of ``volume`` prepared on its own grid (the nearest anatomical axes, no resampling), with the same
    intensity preset; ``volume`` itself when it was not resampled."""
    if volume.grid is None:
        return volume
    plain = PreparedVolume(
        volume.image,
        {},
        volume.image_size,
        volume.axis,
        volume.slice_context,
        "CT" if volume.is_ct else "MR",
        volume.mr_percentiles,
        None,
        conform_oblique=None,  # its own grid, without the warning meant for a user who turned conforming off
    )
    if not volume.is_ct:
        plain._mr = volume.mr_range()  # the same intensities map to the same grey levels as the segmentation's
    for name in ("name", "source_path", "input_warnings"):
        if hasattr(volume, name):
            setattr(plain, name, getattr(volume, name))
    plain.pose = volume.pose  # the report still says how the head was found turned
    return plain


def rebase(result) -> bool:
    """Carry ``result`` (a :class:`~TextSegmentLib.engine.result.Result` without refinements) onto its input's own
    grid, in place (see the module docstring); False when it already is there."""
    old = result.volume
    if old.grid is None:
        return False
    if result._history:
        raise RuntimeError("a refined result cannot be carried onto another grid")
    new = input_grid_volume(old)
    for state in result.states:
        state.mask = new.from_input_mask(old.to_input_array(state.mask))
        state.belief = _carried_belief(state.belief, old, new)
        state.presence = {plane: _carried_presence(logits, old, new, plane) for plane, logits in state.presence.items()}
    result.volume = new
    result._invalidate()
    return True


def _carried_belief(belief, old: PreparedVolume, new: PreparedVolume):
    if belief is None:
        return None
    full = np.zeros(old.canonical.shape, dtype=np.float32)
    full[tuple(slice(lo, hi) for lo, hi in belief.box)] = belief.prob
    on_grid = from_canonical(full, old.reorientation)  # the resampled grid's (k, j, i) order
    idx = np.argwhere(on_grid > 0)
    if not idx.size:
        return None
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    found = values_to_input(on_grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], lo, old.grid, old.image)
    if found is None:
        return None
    start, values = found
    image_shape = tuple(reversed(old.image.GetSize()))
    carried = np.zeros(image_shape, dtype=np.float32)
    carried[tuple(slice(a, a + n) for a, n in zip(start, values.shape))] = values
    canon = to_canonical(carried, new.reorientation)
    keep = np.argwhere(canon >= BELIEF_FLOOR)
    if not keep.size:
        return None
    a, b = keep.min(axis=0), keep.max(axis=0) + 1
    box: Tuple[Tuple[int, int], ...] = tuple((int(x), int(y)) for x, y in zip(a, b))
    return Belief(box, np.ascontiguousarray(canon[a[0] : b[0], a[1] : b[1], a[2] : b[2]]).astype(np.float16))  # type: ignore[arg-type]


def _carried_presence(logits: torch.Tensor, old: PreparedVolume, new: PreparedVolume, plane: str) -> torch.Tensor:
    """Per slice of ``plane`` in ``new``, the presence logit of the slice of ``old`` nearest to its centre."""
    c = AXIS_NORMAL[plane]
    n_new = new.view(plane).num_slices
    if not len(logits) or not n_new:
        return logits[:0]
    size = new.image.GetSize()
    p, flip = new.reorientation.permutation[c], new.reorientation.flips[c]
    nearest = []
    for k in range(n_new):
        ijk = [(n - 1) / 2.0 for n in size]
        ijk[p] = float(size[p] - 1 - k) if flip else float(k)
        s = old.input_index_to_view(ijk, plane)[0]  # the slice of ``old`` through that slice's centre
        nearest.append(int(np.clip(round(s), 0, len(logits) - 1)))
    return logits[torch.as_tensor(nearest, dtype=torch.long)]


__all__ = ["BELIEF_FLOOR", "input_grid_volume", "rebase"]
