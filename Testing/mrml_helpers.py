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
