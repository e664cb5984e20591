"""Planes belong to the volume: a view's slice normal (recorded in world coordinates) -> one of the volume's index axes.

A slice view shows the volume's own slices when its normal is parallel to the normal of the volume's index planes
(``i``, ``j`` or ``k`` constant), wherever those lie in the world: a volume acquired obliquely (Slicer turns its
views to the volume's planes) or a volume under a rotating parent transform. The normal is therefore mapped into the
volume's frame (through the inverse of its parent transform) and compared with the volume's index planes (from its
IJK-to-RAS matrix); the nearest index axis within :data:`MAX_OBLIQUE_DEG` is the slice axis. The engine then gets
that axis's patient-frame plane name (:func:`plane_of_index_axis`: the anatomical plane the engine's nearest-axis
reorientation gives that index axis) and a voxel on the slice.

Example (``slicer-core``)::

    axis = index_axis_of_normal((0, 1, 0), volume_node)   # a coronal view; raises BridgeError when oblique
    plane_of_index_axis(volume_node, axis)                  # e.g. 'coronal', or 'axial' under a 90 degree rotation
"""

import itertools
import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import bridge
from .bridge import BridgeError

#: anatomical plane -> the RAS axis normal to it
PLANE_NORMAL_RAS = {"sagittal": 0, "coronal": 1, "axial": 2}
RAS_AXIS_PLANE = {v: k for k, v in PLANE_NORMAL_RAS.items()}
#: Slicer's default slice view of each plane, for messages
PLANE_VIEW = {"axial": "axial (red)", "coronal": "coronal (green)", "sagittal": "sagittal (yellow)"}
#: a view within this angle of one of the volume's slice planes shows that plane (the box is projected onto the
#: nearest slice); Slicer keeps world-aligned views for volumes tilted less than this and turns them beyond
MAX_OBLIQUE_DEG = 20.0
#: the index axes' names, for messages
AXIS_NAMES = ("i", "j", "k")

OBLIQUE_MESSAGE = (
    "the {what} lie on a view that is {angle:.0f} degrees oblique to the volume's slices; the model refines on the "
    "volume's own slices: in that view's menu choose 'Rotate to volume plane' (or reset its orientation), then draw "
    "again"
)


def slice_normal_world(slice_node: Any) -> Optional[np.ndarray]:
    """The unit normal (RAS, world) of a slice view, from its SliceToRAS matrix; None without a view."""
    if slice_node is None:
        return None
    normal = bridge.vtk_to_np(slice_node.GetSliceToRAS())[:3, 2]
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 and np.all(np.isfinite(normal)) else None


def _directions(volume_node: Any) -> np.ndarray:
    """Unit columns of the volume's IJK-to-RAS matrix (its index axes in its own RAS frame)."""
    _, ijk_to_ras = bridge.volume_to_array(volume_node, copy=False)
    m = ijk_to_ras[:3, :3]
    return m / np.linalg.norm(m, axis=0)


def world_to_volume_normal(normal_world: Sequence[float], volume_node: Any) -> np.ndarray:
    """A world-frame normal -> the volume's own (parent) frame: through the inverse of its parent transform(s)."""
    to_volume = bridge.transform_between(None, volume_node)[:3, :3]  # points: world -> the volume's frame
    normal = np.linalg.inv(to_volume).T @ np.asarray(normal_world, float)  # normals take the inverse transpose
    return normal / np.linalg.norm(normal)


def index_axis_of_normal(
    normal_world: Sequence[float], volume_node: Any, what: str = "box", max_oblique_deg: float = MAX_OBLIQUE_DEG
) -> int:
    """The volume's index axis (0=i, 1=j, 2=k) whose slices a view with ``normal_world`` shows.

    Raises :class:`BridgeError` naming what to do when the view is more than ``max_oblique_deg`` from every slice
    plane of the volume (a reformatted view).
    """
    normal = world_to_volume_normal(normal_world, volume_node)
    plane_normals = np.linalg.inv(_directions(volume_node))  # row a: the normal of the planes where index a is fixed
    plane_normals = plane_normals / np.linalg.norm(plane_normals, axis=1, keepdims=True)
    cosines = np.abs(plane_normals @ normal)
    axis = int(np.argmax(cosines))
    angle = math.degrees(math.acos(min(1.0, float(cosines[axis]))))
    if angle > max_oblique_deg:
        raise BridgeError(OBLIQUE_MESSAGE.format(what=what, angle=angle))
    return axis


def _engine_permutation(directions: np.ndarray) -> Tuple[int, int, int]:
    """RAS axis c -> the index axis the engine reorients onto it (nearest-axis assignment, as
    :func:`TextSegmentLib.imaging.orientation.reorientation_for`; the flips of RAS vs LPS do not matter here)."""
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(directions[c, p[c]]) for c in range(3)))
    return (int(best[0]), int(best[1]), int(best[2]))


def plane_of_index_axis(volume_node: Any, axis: int) -> str:
    """The engine's patient-frame plane ("axial", "coronal", "sagittal") for slices along index ``axis``."""
    permutation = _engine_permutation(_directions(volume_node))
    return RAS_AXIS_PLANE[permutation.index(int(axis))]


def index_axis_of_plane(volume_node: Any, plane: str) -> int:
    """The volume's index axis the engine slices along for ``plane`` (inverse of :func:`plane_of_index_axis`)."""
    if plane not in PLANE_NORMAL_RAS:
        raise BridgeError(f"plane must be axial, coronal or sagittal, not {plane!r}")
    return _engine_permutation(_directions(volume_node))[PLANE_NORMAL_RAS[plane]]


def plane_of_normal(normal_ras: Sequence[float], max_oblique_deg: float = 20.0) -> Optional[str]:
    """The anatomical plane (world axes) nearest to ``normal_ras``; None when more oblique than allowed.

    Only for naming a view (messages, the self-test); refinement uses :func:`index_axis_of_normal`.

    Example:
        >>> plane_of_normal((0, -1, 0)), plane_of_normal((0.1, 0, 1)), plane_of_normal((1, 1, 0))
        ('coronal', 'axial', None)
    """
    n = np.abs(np.asarray(normal_ras, float))
    if not np.all(np.isfinite(n)) or n.max() <= 0:
        return None
    axis = int(np.argmax(n))
    if math.degrees(math.acos(min(1.0, n[axis] / np.linalg.norm(n)))) > max_oblique_deg:
        return None
    return RAS_AXIS_PLANE[axis]


def plane_of_slice_node(slice_node: Any) -> Optional[str]:
    """The anatomical (world) plane a slice view shows; None for an oblique reformat or no view."""
    normal = slice_normal_world(slice_node)
    return plane_of_normal(normal) if normal is not None else None
