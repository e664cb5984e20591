"""Helpers shared by the MRML tests (real slicer-core nodes)."""


def save_and_reload(scene, segmentation_node, path: str):
    """Write ``segmentation_node`` to a .seg.nrrd with MRML's storage node and read it into a new node."""
    import slicer

    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.WriteData(segmentation_node)
    loaded = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(reader)
    reader.SetFileName(path)
    assert reader.ReadData(loaded)
    return loaded


def three_plane_bundle(folder):
    """The tiny random-weight test model (Testing/conftest.py) with a card saying it was trained on all three planes:
    enough for tests about where a refinement changes the segment, not how well."""
    import torch
    from conftest import TINY_MODEL_CONFIG, TINY_VOCABULARY

    from TextSegmentLib.checkpoint import save_bundle
    from TextSegmentLib.model import build_model

    torch.manual_seed(0)
    card = {"name": "tiny-three-planes", "vocabulary": TINY_VOCABULARY}
    card["input"] = {"planes": ["axial", "coronal", "sagittal"]}
    return save_bundle(build_model(TINY_MODEL_CONFIG), folder / "tiny3", card)


def slice_view(scene, orientation=None, slice_to_ras=None):
    """A real slice node: a preset orientation ("Axial", "Coronal", "Sagittal"; the scene needs
    ``vtkMRMLSliceNode.AddDefaultSliceOrientationPresets``) or a 4x4 SliceToRAS array."""
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    if orientation is not None:
        node.SetOrientation(orientation)
    if slice_to_ras is not None:
        for r in range(4):
            for c in range(4):
                node.GetSliceToRAS().SetElement(r, c, float(slice_to_ras[r][c]))
        node.UpdateMatrices()
    return node


def head_array(shape=(16, 28, 24)):
    """A small synthetic head: a bright ball with gradients (float32, (k, j, i))."""
    import numpy as np

    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return (300 * (i**2 + j**2 + k**2 < 0.8) + 40 * i + 20 * j).astype(np.float32)


def edit_segment(segmentation_node, segment_id, mask, volume_node):
    """Replace a segment's content in place as a Segment Editor effect does (vtkSlicerSegmentationsModuleLogic
    ``SetBinaryLabelmapToSegment``, mode replace), on ``volume_node``'s grid."""
    import numpy as np
    import slicer
    import vtk
    from vtk.util import numpy_support

    from TextSegmentLib.slicer import bridge

    _, ijk_to_ras = bridge.volume_to_array(volume_node, copy=False)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.reshape(-1)
    image.SetImageToWorldMatrix(bridge.np_to_vtk(bridge.transform_between(volume_node, segmentation_node) @ ijk_to_ras))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, logic.MODE_REPLACE)


def changed_indices(before, after, axis):
    """Indices along index axis ``axis`` (0=i, 1=j, 2=k) of the slices where two (k, j, i) masks differ."""
    import numpy as np

    numpy_axis = 2 - axis
    other = tuple(a for a in range(3) if a != numpy_axis)
    return set(np.flatnonzero((np.asarray(before) != np.asarray(after)).any(axis=other)).tolist())


def oblique_matrix(degrees=30.0, spacing=(2.0, 2.0, 2.5)):
    """IJK-to-RAS (4x4) of a volume acquired ``degrees`` about R (i along R, j and k tilted in the A-S plane)."""
    import numpy as np

    a = np.radians(degrees)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    m = np.eye(4)
    m[:3, :3] = rotation @ np.diag(spacing)
    m[:3, 3] = (-20.0, -30.0, -15.0)
    return m


def view_of_volume_slices(scene, ijk_to_ras, axis=2):
    """A slice view turned to the volume's planes where index ``axis`` is fixed (Slicer's 'Rotate to volume
    plane')."""
    import numpy as np

    m = np.asarray(ijk_to_ras, float)
    d = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    in_plane = [a for a in range(3) if a != axis]
    slice_to_ras = np.eye(4)
    slice_to_ras[:3, 0], slice_to_ras[:3, 1] = d[:, in_plane[0]], d[:, in_plane[1]]
    slice_to_ras[:3, 2] = np.cross(d[:, in_plane[0]], d[:, in_plane[1]])
    return slice_view(scene, slice_to_ras=slice_to_ras)
