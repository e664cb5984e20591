"""Markups -> refinement prompts: a box (ROI) and +/- points in voxels, on one slice of the volume's own index planes.

Slicer records nothing about the view a markup was placed in: a control point placed on a slice view keeps only its
position, and an ROI drawn with two clicks is axis-aligned with a depth equal to its shortest side
(``vtkMRMLMarkupsROINode::UpdateBoxROIFromControlPoints``), so a 60 x 40 mm box drawn on the coronal view is
60 x 40 x 40 mm and the sizes cannot tell its plane. The module's tools and the Segment Editor effect therefore record
the slice normal of the view under the mouse, in world coordinates, when a markup is placed
(:func:`record_view_plane`). At refine time the normal is mapped into the volume's frame and onto its nearest index
axis (:mod:`.planes`): a view turned to an oblique volume's slices, or showing a volume under a rotating transform,
refines that volume's slices; an oblique reformat is refused with what to do. Without a record the plane is taken
from the geometry when it is unambiguous (an ROI with one strictly shortest side, several points sharing one index
coordinate), else from the caller's ``plane``.

Only :mod:`.bridge` imports ``slicer``/``vtk``; this module works on the nodes it is given.

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

from . import bridge
from .bridge import BridgeError
from .planes import (
    AXIS_NAMES,
    PLANE_NORMAL_RAS,
    PLANE_VIEW,
    index_axis_of_normal,
    index_axis_of_plane,
    plane_of_index_axis,
    plane_of_normal,
    plane_of_slice_node,
    slice_normal_world,
)

__all__ = ["PLANE_NORMAL_RAS", "PLANE_VIEW", "plane_of_normal", "plane_of_slice_node"]

#: on an ROI node: JSON [nx, ny, nz], the world (RAS) slice normal of the view it was drawn on
VIEW_NORMAL_ATTRIBUTE = "TextSegment.ViewNormal"
#: on a point list: JSON [[nx, ny, nz, x, y, z], ...]: the view normals of the points placed at those positions
POINT_NORMALS_ATTRIBUTE = "TextSegment.PointNormals"
#: attribute on a point-list node: "negative" makes all its points negative (the "-" tool's list)
POINT_LABEL_ATTRIBUTE = "TextSegment.PointLabel"
#: every attribute the tools record (cleared with the markups)
RECORD_ATTRIBUTES = (VIEW_NORMAL_ATTRIBUTE, POINT_NORMALS_ATTRIBUTE)

Vec3 = Tuple[float, float, float]


@dataclass
class VoxelPoint:
    """A prompt point: continuous (i, j, k) voxel coordinates and label 1 (positive) or 0 (negative)."""

    ijk: Vec3
    label: int


@dataclass
class RefinePrompts:
    """What the engine's ``refine`` needs, in the volume's continuous voxel coordinates (i, j, k).

    ``plane`` is the engine's "axial", "coronal" or "sagittal" for the slices along index ``axis`` (0=i, 1=j, 2=k),
    ``slice_ijk`` a voxel on the slice, ``box`` two opposite corners on it (or ``None``), ``points``/``labels`` the
    +/- points on it (or ``None``).
    """

    plane: str
    slice_ijk: Vec3
    box: Optional[Tuple[Vec3, Vec3]]
    points: Optional[List[Vec3]]
    labels: Optional[List[int]]
    axis: int = 2

    @property
    def slice_index(self) -> int:
        """The index of the refined slice along :attr:`axis`."""
        return int(round(self.slice_ijk[self.axis]))


def _normal_json(normal: np.ndarray) -> List[float]:
    return [round(float(v), 9) for v in normal]


def _point_records(node: Any) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(world normal, position) of each recorded point."""
    try:
        value = json.loads(node.GetAttribute(POINT_NORMALS_ATTRIBUTE) or "[]")
        return [(np.array(r[0:3], float), np.array(r[3:6], float)) for r in value]
    except (ValueError, TypeError, IndexError):
        return []


def _recorded_normal(records: List[Tuple[np.ndarray, np.ndarray]], position: np.ndarray) -> Optional[np.ndarray]:
    for normal, where in records:
        if np.allclose(where, position, atol=1e-4):
            return normal
    return None


def _positions(node: Any) -> List[np.ndarray]:
    defined = bridge.position_defined_status()
    return [
        np.array(node.GetNthControlPointPosition(n), float)
        for n in range(node.GetNumberOfControlPoints())
        if node.GetNthControlPointPositionStatus(n) == defined
    ]


def record_view_normal(node: Any, normal_world: Optional[Sequence[float]]) -> None:
    """Remember that the newly placed (or moved) markups of ``node`` were placed on a view with ``normal_world``.

    An ROI gets the normal as attribute :data:`VIEW_NORMAL_ATTRIBUTE`. A point list keeps ``[nx, ny, nz, x, y, z]``
    records in :data:`POINT_NORMALS_ATTRIBUTE`: each defined point without a record at its position gets one
    (control point ids are reused after a removal, positions are not), and records of points that are gone are
    dropped. ``None`` (placed in a 3D view or from the console) records nothing new.
    """
    if node is None or normal_world is None:
        return
    normal = _normal_json(np.asarray(normal_world, float))
    if node.IsA("vtkMRMLMarkupsROINode"):
        node.SetAttribute(VIEW_NORMAL_ATTRIBUTE, json.dumps(normal))
        return
    records = _point_records(node)
    kept = []
    for position in _positions(node):
        recorded = _recorded_normal(records, position)
        kept.append([*(normal if recorded is None else _normal_json(recorded)), *(float(v) for v in position)])
    node.SetAttribute(POINT_NORMALS_ATTRIBUTE, json.dumps(kept))


def record_view_plane(node: Any, slice_node: Any) -> Optional[str]:
    """Record ``slice_node``'s world slice normal for the markups just placed on it (:func:`record_view_normal`);
    returns the world plane the view shows (None for an oblique reformat or no view), for messages only."""
    record_view_normal(node, slice_normal_world(slice_node))
    return plane_of_slice_node(slice_node)


def clear_records(node: Any) -> None:
    """Forget the recorded views of ``node`` (its markups were removed)."""
    if node is not None:
        for attribute in RECORD_ATTRIBUTES:
            node.RemoveAttribute(attribute)


# ---------------------------------------------------------------------------------------------------- the box


def _roi_axes(roi_node: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre (3,), unit axes (3 x 3, columns), sizes (3,)) of an ROI in its own (parent) frame."""
    object_to_node = bridge.vtk_to_np(roi_node.GetObjectToNodeMatrix())
    axes = object_to_node[:3, :3]
    scale = np.linalg.norm(axes, axis=0)
    size = np.array(roi_node.GetSize(), float) * scale
    return object_to_node[:3, 3], axes / np.where(scale > 0, scale, 1.0), size


def _recorded_roi_normal(roi_node: Any) -> Optional[np.ndarray]:
    try:
        value = json.loads(roi_node.GetAttribute(VIEW_NORMAL_ATTRIBUTE) or "null")
        return np.array(value[:3], float) if value else None
    except (ValueError, TypeError, IndexError):
        return None


def roi_axis(roi_node: Any, volume_node: Any) -> int:
    """The volume's index axis of the slices the ROI was drawn on: the recorded view, else its one strictly shortest
    side.

    Raises :class:`BridgeError` when neither tells (e.g. a 60 x 40 x 40 mm box from two clicks, whose depth equals
    its shortest side) or when the box lies on an oblique plane.
    """
    recorded = _recorded_roi_normal(roi_node)
    if recorded is not None:
        return index_axis_of_normal(recorded, volume_node, "box")
    _, axes, size = _roi_axes(roi_node)
    order = np.argsort(size)
    if not size[order[0]] < 0.9 * size[order[1]]:
        raise BridgeError(
            "cannot tell which view the box was drawn on (its depth equals its shortest side); draw it with the "
            "TextSegment box tool, or pass plane='axial', 'coronal' or 'sagittal'"
        )
    normal_world = bridge.transform_between(roi_node, None)[:3, :3] @ axes[:, order[0]]
    return index_axis_of_normal(normal_world, volume_node, "box")


def roi_plane(roi_node: Any, volume_node: Any) -> str:
    """The engine plane of the slices the ROI was drawn on (see :func:`roi_axis`)."""
    return plane_of_index_axis(volume_node, roi_axis(roi_node, volume_node))


def _to_ijk(volume_node: Any, node: Any, points_ras: np.ndarray) -> np.ndarray:
    ras_to_ijk = bridge.ras_to_ijk(volume_node, node)
    return (ras_to_ijk @ np.c_[points_ras, np.ones(len(points_ras))].T).T[:, :3]


def _section_bounds(corners: np.ndarray, axis: int, level: float) -> Tuple[np.ndarray, np.ndarray]:
    """In-plane bounds of the section of a box (its 8 corners, bit n of the corner's index = side along edge n) by
    the plane ``index[axis] == level``."""
    d = corners[:, axis] - level
    points = [corners[n] for n in range(8) if abs(d[n]) < 1e-6]
    for a in range(8):
        for bit in (1, 2, 4):
            b = a | bit
            if b != a and d[a] * d[b] < 0:
                t = d[a] / (d[a] - d[b])
                points.append(corners[a] + t * (corners[b] - corners[a]))
    section = np.array(points) if points else corners
    return section.min(axis=0), section.max(axis=0)


def roi_box(roi_node: Any, volume_node: Any, axis: int) -> Tuple[Vec3, Tuple[Vec3, Vec3]]:
    """``(centre, (lo, hi))`` in voxels: the bounds of the ROI's section by the slice ``axis`` through its centre."""
    if roi_node is None or roi_node.GetNumberOfControlPoints() == 0:
        raise BridgeError("the box (ROI) has not been placed yet; draw it on a slice view")
    centre, axes, size = _roi_axes(roi_node)
    if not np.all(np.isfinite(size)) or np.all(size <= 0):
        raise BridgeError("the box (ROI) has no size; draw it on a slice view")
    signs = [(sa, sb, sc) for sc in (-1, 1) for sb in (-1, 1) for sa in (-1, 1)]  # bit 0: a, bit 1: b, bit 2: c
    corners = np.array([centre + (axes * (size / 2)) @ np.array(s, float) for s in signs])
    ijk = _to_ijk(volume_node, roi_node, corners)
    centre_ijk = _to_ijk(volume_node, roi_node, centre[None])[0]
    lo, hi = _section_bounds(ijk, axis, centre_ijk[axis])
    lo[axis] = hi[axis] = centre_ijk[axis]
    in_plane = [n for n in range(3) if n != axis]
    if min(hi[n] - lo[n] for n in in_plane) < 0.5:
        plane = plane_of_index_axis(volume_node, axis)
        raise BridgeError(
            f"the box is less than a voxel wide on the volume's {plane} slices; draw it on the view that shows them"
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
    return [point for point, _ in _defined_points(point_nodes, volume_node)]


def _defined_points(point_nodes: Any, volume_node: Any) -> List[Tuple[VoxelPoint, Optional[np.ndarray]]]:
    """(voxel point, recorded world view normal or None) of every defined point."""
    defined = bridge.position_defined_status()
    out = []
    for node in _point_lists(point_nodes):
        default = 0 if (node.GetAttribute(POINT_LABEL_ATTRIBUTE) or "").lower().startswith("neg") else 1
        records = _point_records(node)
        for n in range(node.GetNumberOfControlPoints()):
            if node.GetNthControlPointPositionStatus(n) != defined:
                continue
            position = np.array(node.GetNthControlPointPosition(n), float)
            ijk = _to_ijk(volume_node, node, position[None])[0]
            normal = _recorded_normal(records, position)
            out.append((VoxelPoint(_vec(ijk), _point_label(node, n, default)), normal))
    return out


def _points_axis(points: List[Tuple[VoxelPoint, Optional[np.ndarray]]], volume_node: Any) -> Optional[int]:
    """The index axis of the points: that of their recorded views (all the same), else the one index coordinate
    they all share, else None."""
    axes = {index_axis_of_normal(n, volume_node, "+/- points") for _, n in points if n is not None}
    if len(axes) > 1:
        names = ", ".join(sorted(plane_of_index_axis(volume_node, a) for a in axes))
        raise BridgeError(
            f"the +/- points were placed on different views ({names}); a refinement uses one slice: clear the points "
            "and place them on one view"
        )
    if axes:
        return axes.pop()
    if len(points) < 2:
        return None
    ijk = np.array([p.ijk for p, _ in points])
    shared = [axis for axis in range(3) if np.ptp(ijk[:, axis]) < 1e-3]
    return shared[0] if len(shared) == 1 else None


# ---------------------------------------------------------------------------------------------------- together


def markups_to_prompts(
    roi_node: Any, point_nodes: Any, volume_node: Any, plane: Optional[str] = None, default_plane: str = "axial"
) -> RefinePrompts:
    """A box and/or +/- points -> :class:`RefinePrompts` on one slice of the volume's index planes.

    The slice axis comes from ``plane`` if given (the engine's patient-frame name), else from the views the box or
    points were drawn on (see the module notes), else ``default_plane`` (the result's own plane: a single point
    placed from the console). Points must lie on the box's slice (or all on one slice); otherwise
    :class:`BridgeError` says so instead of ignoring them.
    """
    if plane is not None and plane not in PLANE_NORMAL_RAS:
        raise BridgeError(f"plane must be axial, coronal or sagittal, not {plane!r}")
    box_node = roi_node if roi_node is not None and roi_node.GetNumberOfControlPoints() > 0 else None
    if roi_node is not None and box_node is None and not _point_lists(point_nodes):
        raise BridgeError("the box (ROI) has not been placed yet; draw it on a slice view")
    points = _defined_points(point_nodes, volume_node)
    if box_node is None and not points:
        raise BridgeError("place a box or at least one +/- point first")
    box_axis = roi_axis(box_node, volume_node) if box_node is not None and plane is None else None
    point_axis = _points_axis(points, volume_node) if points and plane is None else None
    if box_axis is not None and point_axis is not None and box_axis != point_axis:
        raise BridgeError(
            f"the box was drawn on the volume's {plane_of_index_axis(volume_node, box_axis)} slices and the points on "
            f"its {plane_of_index_axis(volume_node, point_axis)} slices; a refinement uses one slice: place them on "
            "the same view"
        )
    if plane is not None:
        axis = index_axis_of_plane(volume_node, plane)
    elif box_axis is not None or point_axis is not None:
        axis = box_axis if box_axis is not None else point_axis
    else:
        axis = index_axis_of_plane(volume_node, default_plane)
    plane = plane_of_index_axis(volume_node, axis)
    box = None
    if box_node is not None:
        slice_ijk, box = roi_box(box_node, volume_node, axis)
    else:
        slice_ijk = points[-1][0].ijk  # the slice of the latest click
    on_slice = [p for p, _ in points if abs(p.ijk[axis] - slice_ijk[axis]) < 0.5]
    if len(on_slice) < len(points):
        where = "the box's slice" if box_node is not None else "the slice of the last point"
        raise BridgeError(
            f"{len(points) - len(on_slice)} of the +/- points lie on other {plane} slices ({AXIS_NAMES[axis]}) than "
            f"{where}; a refinement uses one slice: clear the points (or move them) and place them on that slice"
        )
    return RefinePrompts(
        plane,
        slice_ijk,
        box,
        [p.ijk for p in on_slice] or None,
        [p.label for p in on_slice] or None,
        axis,
    )


def record_view_under_cursor(node: Any, scene: Any) -> Optional[str]:
    """Record, for the markups just placed on ``node``, the slice view under the mouse (the scene's crosshair node
    knows it); nothing is recorded when the mouse is over no slice view. Returns that view's world plane name."""
    crosshair = scene.GetFirstNodeByClass("vtkMRMLCrosshairNode") if scene is not None else None
    slice_node = crosshair.GetCursorPositionXYZ([0.0, 0.0, 0.0]) if crosshair is not None else None
    return record_view_plane(node, slice_node)
