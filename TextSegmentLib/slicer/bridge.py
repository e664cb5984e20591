"""MRML <-> arrays: the only TextSegmentLib module that touches ``slicer`` and ``vtk`` (imported lazily).

It runs inside 3D Slicer and under plain Python with the ``slicer-core`` package (real MRML, no application).

Conventions:
- Arrays are in SimpleITK / ``slicer.util.arrayFromVolume`` order ``(k, j, i)``.
- Geometry handed to the engine is ITK/DICOM **LPS** (spacing, origin, row-major 3x3 direction whose columns are the
  index axes); Slicer stores **RAS** in the IJK-to-RAS matrix. ``LPS = diag(-1, -1, 1) @ RAS``.
- Voxel coordinates of boxes and points are continuous ``(i, j, k)`` index coordinates of the volume (voxel centres at
  integers), the same axes as the array's last, middle and first dimension.
- A linear parent transform is honoured (results are placed in the volume's own coordinate frame and markups are mapped
  into it); a non-linear one raises :class:`BridgeError` asking to harden it.

Example (``slicer-core``):
    >>> import numpy as np
    >>> import slicer
    >>> scene = slicer.vtkMRMLScene()
    >>> node = array_to_volume(scene, np.zeros((4, 5, 6), np.int16), spacing=(1, 1, 2), name="ct")
    >>> array, ijk_to_ras = volume_to_array(node)
    >>> array.shape, float(ijk_to_ras[2, 2])
    ((4, 5, 6), 2.0)
"""

from typing import Any, Optional, Sequence, Tuple

import numpy as np

#: flips between RAS and LPS (its own inverse)
RAS_LPS = np.diag([-1.0, -1.0, 1.0])
BINARY_LABELMAP = "Binary labelmap"


class BridgeError(ValueError):
    """A node cannot be converted; the message says why and what to do."""


def _slicer():
    import slicer  # noqa: PLC0415 (lazy: only available inside Slicer or with slicer-core)

    return slicer


def register_converter_rules() -> None:
    """Register the labelmap <-> closed surface conversion rules once (Slicer's application does this itself)."""
    slicer = _slicer()
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    names = set()
    rules = factory.GetConverterRules() if hasattr(factory, "GetConverterRules") else []
    for rule in rules or []:
        names.add(rule.GetClassName())
    for cls in ("vtkBinaryLabelmapToClosedSurfaceConversionRule", "vtkClosedSurfaceToBinaryLabelmapConversionRule"):
        if cls not in names and hasattr(slicer, cls):
            factory.RegisterConverterRule(getattr(slicer, cls)())


# ---------------------------------------------------------------------------------------------------- matrices


def vtk_to_np(matrix: Any) -> np.ndarray:
    """vtkMatrix4x4 -> (4, 4) float array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def np_to_vtk(array: np.ndarray) -> Any:
    """(4, 4) array -> vtkMatrix4x4."""
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def lps_geometry(ijk_to_ras: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...], Tuple[float, ...]]:
    """IJK-to-RAS (4x4) -> (spacing, origin, direction) in LPS as SimpleITK wants them.

    Example:
        >>> spacing, origin, direction = lps_geometry(np.diag([1.0, 2.0, 3.0, 1.0]))
        >>> spacing, origin, direction[:3]
        ((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), (-1.0, 0.0, 0.0))
    """
    m = np.asarray(ijk_to_ras, float)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise BridgeError("the volume's IJK-to-RAS matrix has a zero column; its geometry is invalid")
    direction = RAS_LPS @ (m[:3, :3] / spacing)
    origin = RAS_LPS @ m[:3, 3]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin),
        tuple(float(d) for d in direction.reshape(-1)),
    )


def ijk_to_ras_from_lps(spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """Inverse of :func:`lps_geometry`: LPS spacing/origin/direction -> IJK-to-RAS (4x4)."""
    m = np.eye(4)
    d = np.asarray(direction, float).reshape(3, 3)
    m[:3, :3] = RAS_LPS @ d @ np.diag(np.asarray(spacing, float))
    m[:3, 3] = RAS_LPS @ np.asarray(origin, float)
    return m


def transform_between(source: Any, target: Any) -> np.ndarray:
    """4x4 matrix mapping coordinates of node ``source``'s parent frame to ``target``'s (identity if same).

    ``None`` stands for the world frame. A non-linear transform raises :class:`BridgeError` (harden it first).
    """
    slicer = _slicer()
    src_t = source.GetParentTransformNode() if source is not None else None
    dst_t = target.GetParentTransformNode() if target is not None else None
    if src_t is None and dst_t is None:
        return np.eye(4)
    for node in (source, target):
        tnode = node.GetParentTransformNode() if node is not None else None
        if tnode is not None and not tnode.IsTransformToWorldLinear():
            raise BridgeError(
                f"'{node.GetName()}' is under the non-linear transform '{tnode.GetName()}'; harden the transform "
                "(Data module, right-click the node > Harden transform) and try again"
            )
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(src_t, dst_t, matrix)
    return vtk_to_np(matrix)


# ---------------------------------------------------------------------------------------------------- volumes


def volume_to_array(volume_node: Any, copy: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Scalar volume node -> ``(array (k, j, i), ijk_to_ras 4x4)`` in the volume's own (parent) frame.

    Raises :class:`BridgeError` for an empty or multi-component volume or a non-linear parent transform.
    """
    from vtk.util import numpy_support  # noqa: PLC0415

    if volume_node is None:
        raise BridgeError("no input volume was given")
    transform_between(volume_node, None)  # refuses non-linear transforms with a clear message
    image = volume_node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise BridgeError(f"volume '{volume_node.GetName()}' has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise BridgeError(
            f"volume '{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} components (colour or vector);"
            " convert it to a scalar volume first (Vector to Scalar Volume module)"
        )
    dims = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])
    if copy:
        array = array.copy()
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return array, vtk_to_np(matrix)


def array_to_volume(
    scene: Any,
    array: np.ndarray,
    ijk_to_ras: Optional[np.ndarray] = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    name: str = "Volume",
    node: Any = None,
    labelmap: bool = False,
) -> Any:
    """(k, j, i) array -> new (or updated) scalar volume node; ``ijk_to_ras`` defaults to diag(spacing).

    Example:
        >>> import slicer
        >>> node = array_to_volume(slicer.vtkMRMLScene(), np.ones((2, 3, 4), np.float32), np.diag([-1, -1, 1, 1.0]))
        >>> node.GetImageData().GetDimensions()
        (4, 3, 2)
    """
    from vtk.util import numpy_support  # noqa: PLC0415

    slicer = _slicer()
    array = np.ascontiguousarray(array)
    if array.ndim != 3:
        raise BridgeError(f"a volume array must be 3-D (k, j, i), got shape {array.shape}")
    if node is None:
        cls = slicer.vtkMRMLLabelMapVolumeNode if labelmap else slicer.vtkMRMLScalarVolumeNode
        node = scene.AddNewNodeByClass(cls.__name__, name) if hasattr(scene, "AddNewNodeByClass") else None
        if node is None:
            node = cls()
            node.SetName(name)
            scene.AddNode(node)
    import vtk  # noqa: PLC0415

    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(array.reshape(-1), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    node.SetAndObserveImageData(image)
    m = np.diag(list(spacing) + [1.0]) if ijk_to_ras is None else np.asarray(ijk_to_ras, float)
    node.SetIJKToRASMatrix(np_to_vtk(m))
    if hasattr(node, "CreateDefaultDisplayNodes") and scene is not None:
        node.CreateDefaultDisplayNodes()
    return node


# ---------------------------------------------------------------------------------------------------- segments


def oriented_image(mask: np.ndarray, image_to_world: np.ndarray) -> Any:
    """A (k, j, i) 0/1 mask -> vtkOrientedImageData (uint8) with ``image_to_world`` as its geometry."""
    import vtk  # noqa: PLC0415
    from vtk.util import numpy_support  # noqa: PLC0415

    slicer = _slicer()
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.reshape(-1)
    image.SetImageToWorldMatrix(np_to_vtk(image_to_world))
    return image


def copy_segment(segment: Any) -> Any:
    """Deep copy of a vtkSegment (name, colour, tags and representations)."""
    slicer = _slicer()
    out = slicer.vtkSegment()
    out.DeepCopy(segment)
    return out


def write_segment(
    segmentation_node: Any,
    mask: np.ndarray,
    ijk_to_ras: np.ndarray,
    name: str,
    color: Optional[Sequence[float]] = None,
    terminology: Optional[str] = None,
    volume_node: Any = None,
    segment_id: Optional[str] = None,
) -> Tuple[str, Optional[Any]]:
    """Put a (k, j, i) mask on the grid ``ijk_to_ras`` into a segment; returns ``(segment_id, previous_segment)``.

    The segment replaced is ``segment_id`` if given, else the one named ``name``; it is swapped out only once the new
    segment is complete, at the same position in the list, and a copy of it is returned for undo (``None`` when the
    segment is new). ``volume_node`` (optional) is the node whose frame ``ijk_to_ras`` is in; a linear transform between
    it and the segmentation is applied.
    """
    register_converter_rules()
    slicer = _slicer()
    image_to_seg = transform_between(volume_node, segmentation_node) if volume_node is not None else np.eye(4)
    image = oriented_image(np.asarray(mask) > 0, image_to_seg @ np.asarray(ijk_to_ras, float))
    segmentation = segmentation_node.GetSegmentation()
    old_id = segment_id or segmentation.GetSegmentIdBySegmentName(name) or None
    old_segment = segmentation.GetSegment(old_id) if old_id else None
    previous = copy_segment(old_segment) if old_segment is not None else None

    segment = slicer.vtkSegment()
    segment.SetName(name)
    if hasattr(segment, "SetNameAutoGenerated"):  # the name and colour are chosen, not placeholders (Slicer >= 5.2)
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(color is None and old_segment is None)
    if color is None and old_segment is not None:
        color = old_segment.GetColor()
    if color is not None:
        segment.SetColor(*[float(c) for c in color[:3]])
    tag = segment.GetTerminologyEntryTagName()
    if terminology:
        segment.SetTag(tag, terminology)
    elif old_segment is not None and get_tag(old_segment, tag):
        segment.SetTag(tag, get_tag(old_segment, tag))
    segment.AddRepresentation(BINARY_LABELMAP, image)
    if old_segment is None:
        new_id = segmentation.GenerateUniqueSegmentID(_safe_id(name))
        segmentation.AddSegment(segment, new_id)
        return new_id, None
    index = segmentation.GetSegmentIndex(old_id)
    temp_id = segmentation.GenerateUniqueSegmentID(old_id + "_new")
    segmentation.AddSegment(segment, temp_id)  # complete before the old one goes
    segmentation.RemoveSegment(old_id)
    restore_segment(segmentation_node, old_id, segmentation.GetSegment(temp_id), index, remove_id=temp_id)
    return old_id, previous


def get_tag(segment: Any, name: str) -> str:
    """A segment's tag value ("" when absent); e.g. ``get_tag(s, s.GetTerminologyEntryTagName())``."""
    import vtk  # noqa: PLC0415

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else ""


def restore_segment(
    segmentation_node: Any, segment_id: str, segment: Any, index: int = -1, remove_id: Optional[str] = None
) -> None:
    """Put ``segment`` (a vtkSegment) under ``segment_id`` at ``index``, replacing what is there (undo uses this)."""
    register_converter_rules()
    segmentation = segmentation_node.GetSegmentation()
    copy = copy_segment(segment)
    if remove_id and segmentation.GetSegment(remove_id) is not None:
        segmentation.RemoveSegment(remove_id)
    if segmentation.GetSegment(segment_id) is not None:
        if index < 0:
            index = segmentation.GetSegmentIndex(segment_id)
        segmentation.RemoveSegment(segment_id)
    segmentation.AddSegment(copy, segment_id)
    if 0 <= index < segmentation.GetNumberOfSegments():
        segmentation.SetSegmentIndex(segment_id, index)


def _safe_id(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in name.strip()).strip("_")
    return cleaned or "segment"


def segment_to_array(segmentation_node: Any, segment_id: str, volume_node: Any) -> np.ndarray:
    """A segment resampled (nearest neighbour) onto ``volume_node``'s grid -> uint8 (k, j, i) mask of 0/1."""
    from vtk.util import numpy_support  # noqa: PLC0415

    register_converter_rules()
    slicer = _slicer()
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise BridgeError(f"segmentation '{segmentation_node.GetName()}' has no segment '{segment_id}'")
    source = slicer.vtkOrientedImageData()
    segmentation_node.GetBinaryLabelmapRepresentation(segment_id, source)
    array, ijk_to_ras = volume_to_array(volume_node, copy=False)
    reference_to_seg = transform_between(volume_node, segmentation_node) @ ijk_to_ras
    reference = oriented_image(np.zeros(array.shape, np.uint8), reference_to_seg)
    out = slicer.vtkOrientedImageData()
    if source.GetPointData() is None or source.GetPointData().GetScalars() is None or _empty_extent(source):
        return np.zeros(array.shape, np.uint8)
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(source, reference, out)
    dims = out.GetDimensions()
    values = numpy_support.vtk_to_numpy(out.GetPointData().GetScalars()).reshape(dims[::-1])
    label = segment.GetLabelValue() if hasattr(segment, "GetLabelValue") else 1
    unique = np.unique(values)
    mask = (values == label) if (len(unique) > 2 or (len(unique) == 2 and unique[1] != 1)) else (values > 0)
    return mask.astype(np.uint8)


def _empty_extent(image: Any) -> bool:
    e = image.GetExtent()
    return e[1] < e[0] or e[3] < e[2] or e[5] < e[4]


# ---------------------------------------------------------------------------------------------------- markups


def position_defined_status() -> int:
    """``vtkMRMLMarkupsNode.PositionDefined``: the status of a control point that has been placed."""
    return int(getattr(_slicer().vtkMRMLMarkupsNode, "PositionDefined", 2))


def ras_to_ijk(volume_node: Any, source_node: Any) -> np.ndarray:
    """4x4 mapping ``source_node``'s frame (e.g. a markup's local RAS) to ``volume_node``'s continuous IJK."""
    import vtk  # noqa: PLC0415

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    return vtk_to_np(matrix) @ transform_between(source_node, volume_node)


# ---------------------------------------------------------------------------------------------------- nodes


def prepare_segmentation_node(segmentation_node: Any, volume_node: Any) -> None:
    """Tie a segmentation to the volume: reference geometry, same parent transform if it has none, display node."""
    register_converter_rules()
    if volume_node is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        parent = volume_node.GetParentTransformNode()
        if parent is not None and segmentation_node.GetParentTransformNode() is None:
            segmentation_node.SetAndObserveTransformNodeID(parent.GetID())
    if segmentation_node.GetDisplayNode() is None and segmentation_node.GetScene() is not None:
        segmentation_node.CreateDefaultDisplayNodes()


def share_layers(segmentation_node: Any) -> int:
    """Merge segments that do not overlap into shared labelmap layers (overlapping ones keep separate layers).

    One full-size layer per segment would cost memory with every prompt and write one layer per segment into a
    ``.seg.nrrd``; shared layers hold several segments as distinct label values (what Slicer's Segment Editor
    does). Returns the number of layers.
    """
    segmentation = segmentation_node.GetSegmentation()
    segmentation.CollapseBinaryLabelmaps(False)
    return int(segmentation.GetNumberOfLayers())


def place_with_volume(segmentation_node: Any, volume_node: Any) -> bool:
    """Put the segmentation next to its volume in the subject hierarchy (under the volume's study in the Data
    module); False when the scene has no hierarchy or the volume is not in it."""
    slicer = _slicer()
    scene = segmentation_node.GetScene()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if hierarchy is None or volume_node is None:
        return False
    volume_item = hierarchy.GetItemByDataNode(volume_node)
    if not volume_item:
        return False
    parent = hierarchy.GetItemParent(volume_item)
    item = hierarchy.GetItemByDataNode(segmentation_node)
    if not item:  # Slicer's application creates items for new nodes; plain MRML (slicer-core) does not
        item = hierarchy.CreateItem(parent, segmentation_node)
    hierarchy.SetItemParent(item, parent)
    return bool(item) and hierarchy.GetItemParent(item) == parent
