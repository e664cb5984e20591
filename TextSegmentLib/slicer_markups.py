"""Markups -> refinement prompts: a box (ROI) and +/- points in voxels, and the plane of the view they were drawn on.

Slicer records nothing about the view a markup was placed in: a control point placed on a slice view keeps only its
position (its orientation is the identity and its associated node is the background volume), and an ROI drawn with
two clicks is axis-aligned with a depth equal to its shortest side (``vtkMRMLMarkupsROINode::
UpdateBoxROIFromControlPoints``), so a 60 x 40 mm box drawn on the coronal view is 60 x 40 x 40 mm and the sizes
cannot tell its plane. The module's tools therefore record the plane of the slice view under the mouse when a point
is placed (:func:`record_view_plane`, from the crosshair node's cursor position); without a record the plane is
taken from the geometry when it is unambiguous (an ROI with one strictly shortest side, several points sharing one
coordinate), else from the caller's ``plane``.

Only ``slicer_bridge`` imports ``slicer``/``vtk``; this module works on the nodes it is given.

Example (``slicer-core``)::

    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
    roi.AddControlPoint(vtk.vtkVector3d(-20, 10, 5)); roi.AddControlPoint(vtk.vtkVector3d(40, 10, 45))
    record_view_plane(roi, coronal_slice_node)   # what the module's box tool does when the ROI is placed
    prompts = markups_to_prompts(roi, None, volume_node)
    prompts.plane, prompts.box                   # ('coronal', ((i0, j, k0), (i1, j, k1)))
"""

import json
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import slicer_bridge as bridge
from .slicer_bridge import BridgeError

#: anatomical plane -> the RAS axis normal to it
PLANE_NORMAL_RAS = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Slicer's default slice view of each plane, for messages
PLANE_VIEW = {"axial": "axial (red)", "coronal": "coronal (green)", "sagittal": "sagittal (yellow)"}
#: on an ROI node: the plane of the view it was drawn on
PLANE_ATTRIBUTE = "TextSegment.Plane"
#: on a point list: JSON [[plane, x, y, z], ...]: the views the points at those positions were placed on
POINT_PLANES_ATTRIBUTE = "TextSegment.PointPlanes"
#: attribute on a point-list node: "negative" makes all its points negative (the "-" tool's list)
POINT_LABEL_ATTRIBUTE = "TextSegment.PointLabel"
#: recorded for markups placed on a reformatted (oblique) view
OBLIQUE = "oblique"
#: a view whose normal is within this angle of an anatomical axis shows that plane
MAX_OBLIQUE_DEG = 20.0

Vec3 = Tuple[float, float, float]
_OBLIQUE_MESSAGE = (
    "the {what} lie on an oblique (reformatted) view; the model refines on axial, coronal or sagittal slices: "
    "reset the view's orientation (slice view menu) or use another view"
)


@dataclass
class VoxelPoint:
    """A prompt point: continuous (i, j, k) voxel coordinates and label 1 (positive) or 0 (negative)."""

    ijk: Vec3
    label: int


@dataclass
class RefinePrompts:
    """What the engine's ``refine`` needs, in the volume's continuous voxel coordinates (i, j, k).

    ``plane`` is "axial", "coronal" or "sagittal" (``None``: the result's own plane), ``slice_ijk`` a voxel on the
    slice, ``box`` two opposite corners on it (or ``None``), ``points``/``labels`` the +/- points on it (or ``None``).
    """

    plane: Optional[str]
    slice_ijk: Vec3
    box: Optional[Tuple[Vec3, Vec3]]
    points: Optional[List[Vec3]]
    labels: Optional[List[int]]


def plane_of_normal(normal_ras: Sequence[float], max_oblique_deg: float = MAX_OBLIQUE_DEG) -> Optional[str]:
    """The anatomical plane whose normal is nearest to ``normal_ras``; ``None`` when it is more oblique than allowed.

    Example:
        >>> plane_of_normal((0, -1, 0)), plane_of_normal((0.1, 0, 1)), plane_of_normal((1, 1, 0))
        ('coronal', 'axial', None)
    """
    n = np.abs(np.asarray(normal_ras, float))
    if not np.all(np.isfinite(n)) or n.max() <= 0:
        return None
    axis = int(np.argmax(n))
    if np.degrees(np.arccos(min(1.0, n[axis] / np.linalg.norm(n)))) > max_oblique_deg:
        return None
    return {v: k for k, v in PLANE_NORMAL_RAS.items()}[axis]


def plane_of_slice_node(slice_node: Any) -> Optional[str]:
    """The anatomical plane a slice view shows (from its SliceToRAS normal); ``None`` for an oblique reformat."""
    if slice_node is None:
        return None
    normal = bridge.vtk_to_np(slice_node.GetSliceToRAS())[:3, 2]
    return plane_of_normal(normal)


def _point_records(node: Any) -> List[Tuple[str, np.ndarray]]:
    try:
        value = json.loads(node.GetAttribute(POINT_PLANES_ATTRIBUTE) or "[]")
        return [(str(r[0]), np.array(r[1:4], float)) for r in value]
    except (ValueError, TypeError, IndexError):
        return []


def _recorded_plane(records: List[Tuple[str, np.ndarray]], position: np.ndarray) -> Optional[str]:
    for plane, where in records:
        if np.allclose(where, position, atol=1e-4):
            return plane
    return None


def _positions(node: Any) -> List[np.ndarray]:
    defined = bridge.position_defined_status()
    return [
        np.array(node.GetNthControlPointPosition(n), float)
        for n in range(node.GetNumberOfControlPoints())
        if node.GetNthControlPointPositionStatus(n) == defined
    ]


def record_view_plane(node: Any, slice_node: Any) -> Optional[str]:
    """Remember that the newly placed (or moved) markups of ``node`` were placed on ``slice_node``'s view.

    An ROI gets the plane as attribute :data:`PLANE_ATTRIBUTE`. A point list keeps ``[plane, x, y, z]`` records in
    :data:`POINT_PLANES_ATTRIBUTE`: each defined point without a record at its position gets one (control point ids
    are reused after a removal, positions are not), and records of points that are gone are dropped. An oblique view
    is recorded as such (the refinement then says it cannot use it); no view (``None``: placed in a 3D view or from
    the console) records nothing. Returns the view's plane.
    """
    plane = plane_of_slice_node(slice_node)
    if node is None or slice_node is None:
        return plane
    recorded = plane or OBLIQUE
    if node.IsA("vtkMRMLMarkupsROINode"):
        node.SetAttribute(PLANE_ATTRIBUTE, recorded)
        return plane
    records = _point_records(node)
    kept = []
    for position in _positions(node):
        kept.append([_recorded_plane(records, position) or recorded, *(float(v) for v in position)])
    node.SetAttribute(POINT_PLANES_ATTRIBUTE, json.dumps(kept))
    return plane


# ---------------------------------------------------------------------------------------------------- the box


def _roi_axes(roi_node: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre (3,), unit axes (3 x 3, columns), sizes (3,)) of an ROI in its own (parent) frame."""
    object_to_node = bridge.vtk_to_np(roi_node.GetObjectToNodeMatrix())
    axes = object_to_node[:3, :3]
    scale = np.linalg.norm(axes, axis=0)
    size = np.array(roi_node.GetSize(), float) * scale
    return object_to_node[:3, 3], axes / np.where(scale > 0, scale, 1.0), size


def roi_plane(roi_node: Any, volume_node: Any = None) -> str:
    """The plane an ROI was drawn on: the recorded view, else its one strictly shortest side.

    Raises :class:`BridgeError` when neither tells (e.g. a 60 x 40 x 40 mm box from two clicks, whose depth equals
    its shortest side) or when the box lies on an oblique plane.
    """
    recorded = roi_node.GetAttribute(PLANE_ATTRIBUTE)
    if recorded in PLANE_NORMAL_RAS:
        return recorded
    if recorded == OBLIQUE:
        raise BridgeError(_OBLIQUE_MESSAGE.format(what="box"))
    _, axes, size = _roi_axes(roi_node)
    order = np.argsort(size)
    if not size[order[0]] < 0.9 * size[order[1]]:
        raise BridgeError(
            "cannot tell which view the box was drawn on (its depth equals its shortest side); draw it with the "
            "TextSegment box tool, or pass plane='axial', 'coronal' or 'sagittal'"
        )
    normal = axes[:, order[0]]
    if volume_node is not None:
        normal = bridge.transform_between(roi_node, volume_node)[:3, :3] @ normal
    plane = plane_of_normal(normal)
    if plane is None:
        raise BridgeError(_OBLIQUE_MESSAGE.format(what="box"))
    return plane


def _to_ijk(volume_node: Any, node: Any, points_ras: np.ndarray) -> np.ndarray:
    ras_to_ijk = bridge.ras_to_ijk(volume_node, node)
    return (ras_to_ijk @ np.c_[points_ras, np.ones(len(points_ras))].T).T[:, :3]


def _normal_index_axis(volume_node: Any, plane: str) -> int:
    """The volume's index axis (0=i, 1=j, 2=k) nearest to the plane's normal."""
    _, ijk_to_ras = bridge.volume_to_array(volume_node, copy=False)
    directions = ijk_to_ras[:3, :3] / np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[PLANE_NORMAL_RAS[plane]])))


def roi_box(roi_node: Any, volume_node: Any, plane: str) -> Tuple[Vec3, Tuple[Vec3, Vec3]]:
    """``(centre, (lo, hi))`` in voxels of the ROI's face on ``plane`` through its centre (the depth is dropped)."""
    if roi_node is None or roi_node.GetNumberOfControlPoints() == 0:
        raise BridgeError("the box (ROI) has not been placed yet; draw it on a slice view")
    centre, axes, size = _roi_axes(roi_node)
    if not np.all(np.isfinite(size)) or np.all(size <= 0):
        raise BridgeError("the box (ROI) has no size; draw it on a slice view")
    normal_ras = np.eye(3)[PLANE_NORMAL_RAS[plane]]
    to_volume = bridge.transform_between(roi_node, volume_node)[:3, :3]
    depth_axis = int(np.argmax(np.abs(normal_ras @ (to_volume @ axes))))
    a, b = [n for n in range(3) if n != depth_axis]
    half_a, half_b = size[a] / 2 * axes[:, a], size[b] / 2 * axes[:, b]
    corners = [centre + sa * half_a + sb * half_b for sa in (-1, 1) for sb in (-1, 1)]
    ijk = _to_ijk(volume_node, roi_node, np.array(corners))
    centre_ijk = _to_ijk(volume_node, roi_node, centre[None])[0]
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    axis = _normal_index_axis(volume_node, plane)
    lo[axis] = hi[axis] = centre_ijk[axis]
    in_plane = [n for n in range(3) if n != axis]
    if min(hi[n] - lo[n] for n in in_plane) < 0.5:
        raise BridgeError(
            f"the box is less than a voxel wide on the {plane} plane; draw it on the {PLANE_VIEW[plane]} view"
        )
    return _vec(centre_ijk), (_vec(lo), _vec(hi))


def _vec(values: Sequence[float]) -> Vec3:
    return (float(values[0]), float(values[1]), float(values[2]))


# ---------------------------------------------------------------------------------------------------- points


def _point_label(node: Any, index: int, default: int) -> int:
    text = (node.GetNthControlPointLabel(index) or "").strip().lower()
    if text.startswith("-") or text.startswith("neg"):
        return 0
    if text.startswith("+") or text.startswith("pos"):
        return 1
    return default


def _point_lists(point_nodes: Any) -> List[Any]:
    if point_nodes is None:
        return []
    nodes = list(point_nodes) if isinstance(point_nodes, (list, tuple)) else [point_nodes]
    return [n for n in nodes if n is not None]


def points_to_voxels(point_nodes: Any, volume_node: Any) -> List[VoxelPoint]:
    """Point list(s) -> +/- :class:`VoxelPoint` list.

    ``point_nodes`` is one point-list node or a sequence of them (e.g. ``(positives, negatives)``). A list whose
    attribute ``TextSegment.PointLabel`` is ``negative`` gives negative points; otherwise a point is negative when its
    label starts with ``-`` or ``neg``. Points whose position is undefined (still being placed) are skipped.
    """
    return [point for point, _, _ in _defined_points(point_nodes, volume_node)]


def _defined_points(point_nodes: Any, volume_node: Any) -> List[Tuple[VoxelPoint, Optional[str], np.ndarray]]:
    """(voxel point, recorded plane, RAS position in the volume's frame) of every defined point."""
    defined = bridge.position_defined_status()
    out = []
    for node in _point_lists(point_nodes):
        default = 0 if (node.GetAttribute(POINT_LABEL_ATTRIBUTE) or "").lower().startswith("neg") else 1
        records = _point_records(node)
        to_volume = bridge.transform_between(node, volume_node)
        for n in range(node.GetNumberOfControlPoints()):
            if node.GetNthControlPointPositionStatus(n) != defined:
                continue
            position = np.array(node.GetNthControlPointPosition(n), float)
            ras = (to_volume @ np.r_[position, 1.0])[:3]
            ijk = _to_ijk(volume_node, node, position[None])[0]
            plane = _recorded_plane(records, position)
            out.append((VoxelPoint(_vec(ijk), _point_label(node, n, default)), plane, ras))
    return out


def _points_plane(points: List[Tuple[VoxelPoint, Optional[str], np.ndarray]]) -> Optional[str]:
    """The plane of the points: the recorded views (all the same), else the one coordinate that they all share."""
    recorded = {plane for _, plane, _ in points if plane}
    if OBLIQUE in recorded:
        raise BridgeError(_OBLIQUE_MESSAGE.format(what="+/- points"))
    if len(recorded) > 1:
        raise BridgeError(
            "the +/- points were placed on different views (" + ", ".join(sorted(recorded)) + "); a refinement "
            "uses one slice: clear the points and place them on one view"
        )
    if recorded:
        return recorded.pop()
    if len(points) < 2:
        return None
    ras = np.array([p for _, _, p in points])
    shared = [axis for axis in range(3) if np.ptp(ras[:, axis]) < 1e-3]
    if len(shared) == 1:
        return {v: k for k, v in PLANE_NORMAL_RAS.items()}[shared[0]]
    return None


# ---------------------------------------------------------------------------------------------------- together


def markups_to_prompts(
    roi_node: Any, point_nodes: Any, volume_node: Any, plane: Optional[str] = None, default_plane: str = "axial"
) -> RefinePrompts:
    """A box and/or +/- points -> :class:`RefinePrompts` on one slice of one plane.

    The plane comes from ``plane`` if given, else from where the box or points were drawn (see the module notes),
    else ``default_plane`` (the result's own plane: a single point placed from the console). Points must lie on the
    box's slice (or all on one slice); otherwise :class:`BridgeError` says so instead of ignoring them.
    """
    if plane is not None and plane not in PLANE_NORMAL_RAS:
        raise BridgeError(f"plane must be axial, coronal or sagittal, not {plane!r}")
    box_node = roi_node if roi_node is not None and roi_node.GetNumberOfControlPoints() > 0 else None
    if roi_node is not None and box_node is None and not _point_lists(point_nodes):
        raise BridgeError("the box (ROI) has not been placed yet; draw it on a slice view")
    points = _defined_points(point_nodes, volume_node)
    if box_node is None and not points:
        raise BridgeError("place a box or at least one +/- point first")
    box_plane = roi_plane(box_node, volume_node) if box_node is not None and plane is None else None
    point_plane = _points_plane(points) if points and plane is None else None
    if box_plane and point_plane and box_plane != point_plane:
        raise BridgeError(
            f"the box was drawn on the {box_plane} view and the points on the {point_plane} view; a refinement uses "
            "one slice: place them on the same view"
        )
    plane = plane or box_plane or point_plane or default_plane
    axis = _normal_index_axis(volume_node, plane)
    box = None
    if box_node is not None:
        slice_ijk, box = roi_box(box_node, volume_node, plane)
    else:
        slice_ijk = points[-1][0].ijk  # the slice of the latest click
    on_slice = [p for p, _, _ in points if abs(p.ijk[axis] - slice_ijk[axis]) < 0.5]
    if len(on_slice) < len(points):
        where = "the box's slice" if box_node is not None else "the slice of the last point"
        raise BridgeError(
            f"{len(points) - len(on_slice)} of the +/- points lie on other {plane} slices than {where}; a "
            "refinement uses one slice: clear the points (or move them) and place them on that slice"
        )
    return RefinePrompts(
        plane,
        slice_ijk,
        box,
        [p.ijk for p in on_slice] or None,
        [p.label for p in on_slice] or None,
    )
