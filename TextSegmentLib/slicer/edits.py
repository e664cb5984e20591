"""A refinement starts from the segment as it is in the node and changes only what it refines; undo is exact.

The engine keeps its own copy of every prompt's mask; the user may have changed the segment since (Segment Editor
paint, erase, islands, ...). Before a refinement the node's current content replaces the engine's copy
(:func:`load_current`), so the engine refines what the user sees; afterwards only the voxels the refinement changed
are written back into the node's *current* content (:func:`apply_voxels`), and an undo puts back exactly those voxels
(:class:`~.session.VoxelChange`), whatever else was edited in between.

Example (``slicer-core``)::

    before = current_mask(seg_node, "brain", volume_node)
    load_current(result, 0, before)            # on the worker, before Segmenter.refine
    change = VoxelChange.between("brain", before, result.mask(0))
    apply_voxels(seg_node, volume_node, change)              # the refinement
    apply_voxels(seg_node, volume_node, change, undo=True)   # its undo
"""

from typing import Any, Optional

import numpy as np

from . import bridge
from .session import VoxelChange


def current_mask(segmentation_node: Any, segment_id: str, volume_node: Any) -> np.ndarray:
    """The segment as it is now in the node, on ``volume_node``'s grid: a bool (k, j, i) array."""
    return bridge.segment_to_array(segmentation_node, segment_id, volume_node) > 0


def load_current(result: Any, prompt_index: int, mask: np.ndarray) -> None:
    """Make ``mask`` (input (k, j, i) order) the engine's mask of ``prompt_index`` before a refinement.

    The engine's ``Segmenter.refine`` also takes it as ``current=``; this does the same for any engine version
    (the engine's undo then restores the refined slices to this content).
    """
    state = result.states[prompt_index]
    expected = tuple(result.volume.image.GetSize())[::-1]
    if tuple(mask.shape) != expected:
        raise bridge.BridgeError(
            f"the segment's grid {mask.shape} is not the volume's {expected}; segment the volume again"
        )
    state.mask = np.array(result.volume.from_input_mask(mask), dtype=bool, order="C", copy=True)  # never a view
    invalidate = getattr(result, "_invalidate", None)
    if invalidate is not None:
        invalidate()


def write_mask(segmentation_node: Any, segment_id: str, mask: np.ndarray, volume_node: Any) -> str:
    """Replace the content of ``segment_id`` by ``mask`` (on ``volume_node``'s grid), keeping its name, colour,
    terminology and place in the list; returns the segment id."""
    _, ijk_to_ras = bridge.volume_to_array(volume_node, copy=False)
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        raise bridge.BridgeError(
            f"segment '{segment_id}' is no longer in '{segmentation_node.GetName()}'; segment it again"
        )
    sid, _ = bridge.write_segment(
        segmentation_node, mask, ijk_to_ras, segment.GetName(), None, None, volume_node, segment_id
    )
    bridge.share_layers(segmentation_node)
    return sid


def apply_voxels(
    segmentation_node: Any, volume_node: Any, change: VoxelChange, undo: bool = False, now: Optional[np.ndarray] = None
) -> np.ndarray:
    """Apply (or undo) ``change`` to the segment's *current* content in the node; returns the new mask.

    Nothing is written when the change is empty.
    """
    if now is None:
        now = current_mask(segmentation_node, change.segment_id, volume_node)
    new = change.apply(now, undo=undo)
    if change.count:
        write_mask(segmentation_node, change.segment_id, new, volume_node)
    return new
