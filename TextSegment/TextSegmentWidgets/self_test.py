"""The self-test's GUI flow: a small volume, prompts, Segment, results, a box on a slice view, Apply, Undo.

It uses the embedded default model and a synthetic head made here, so it downloads nothing. It drives the real widget
through its slots and lets the event loop (``slicer.app.processEvents``) run the job timer, as a user's clicks would.
The pytest suite runs the same function on real MRML with the Qt parts stood in (Testing/test_slicer_module_flow.py).
"""

import time
import unittest

import numpy as np
import slicer

#: Slicer's slice view of each plane
VIEWS = {"axial": "Red", "coronal": "Green", "sagittal": "Yellow"}


def headVolume(scene, shape=(24, 36, 30), spacing=3.0):
    """A synthetic T1-like head (bright scalp, grey brain, darker ventricles), LPS-stored, ``spacing`` mm."""
    from TextSegmentLib.slicer import bridge

    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = np.sqrt(i**2 + (j / 1.15) ** 2 + (k / 0.9) ** 2)
    array = np.where(r < 0.95, 300.0, 0.0) + np.where(r < 0.85, 200.0, 0.0)
    array[(np.abs(i) < 0.25) & (np.abs(j) < 0.35) & (np.abs(k) < 0.3) & (np.abs(i) > 0.05)] = 150.0
    ijk_to_ras = np.diag([-spacing, -spacing, spacing, 1.0])
    return bridge.array_to_volume(scene, array.astype(np.int16), ijk_to_ras, name="TextSegment test head")


def sliceNodeShowing(scene, plane):
    """The slice view node that shows ``plane`` (Red/Yellow/Green in Slicer's default layout)."""
    from TextSegmentLib.slicer.markups import plane_of_slice_node

    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    candidates = [nodes.GetItemAsObject(n) for n in range(nodes.GetNumberOfItems())]
    preferred = [n for n in candidates if n.GetLayoutName() == VIEWS[plane]]
    for node in preferred + candidates:
        if plane_of_slice_node(node) == plane:
            return node
    raise AssertionError(f"no slice view shows the {plane} plane")


def waitForJob(widget, timeout=600.0):
    """Let the event loop run (the widget's job timer ticks in it) until the widget's job has ended."""
    deadline = time.monotonic() + timeout
    while widget._job is not None:
        if time.monotonic() > deadline:
            widget.onCancel()
            raise AssertionError(f"the job did not end within {timeout:.0f} s")
        slicer.app.processEvents()


def runSelfTest(test, widget, timeout=600.0):
    """Segment two prompts through the widget, then a box on the coronal view (or the plane the model refines in),
    Apply and Undo; ``test`` is a unittest.TestCase (its asserts are used)."""
    from TextSegmentLib.catalog import list_models
    from TextSegmentLib.slicer import bridge
    from TextSegmentLib.slicer.markups import record_view_plane

    default = [m for m in list_models() if m.default]
    if not default or not default[0].installed:
        raise unittest.SkipTest("TextSegment self-test skipped: the embedded default model is missing (no download)")
    scene = slicer.mrmlScene
    volume = headVolume(scene)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Test patient"), "MR")
    volumeItem = hierarchy.GetItemByDataNode(volume) or hierarchy.CreateItem(study, volume)
    hierarchy.SetItemParent(volumeItem, study)

    if widget._parameterNode is None:  # run from Self Tests after the module was left (the scene was cleared)
        widget.initializeParameterNode()
    p = widget._parameterNode
    p.inputVolume, p.outputSegmentation, p.model = volume, None, "default"
    p.presenceThreshold, p.minComponentMl = 0.0, 0.0
    widget.background.prepare()  # what selecting the volume starts: the model loads and the slices encode meanwhile
    widget.ui.promptEdit.setPlainText("brain\nleft hippocampus")
    widget.onSegment()  # cancels the preparation (what it encoded stays) and runs next
    waitForJob(widget, timeout)
    seg = p.outputSegmentation
    test.assertIsNotNone(seg, "Segment made no segmentation")
    segmentation = seg.GetSegmentation()
    names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    test.assertEqual(names, ["brain", "left hippocampus"])
    test.assertEqual(widget.ui.resultsTable.rowCount, 2)
    test.assertEqual(hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg)), study)

    # A box drawn with two clicks on a slice view, through the volume's centre.
    sid = segmentation.GetSegmentIdBySegmentName("brain")
    before = bridge.segment_to_array(seg, sid, volume)
    planes = widget.logic.refinePlanes(widget.logic.session(seg).result)
    plane = "coronal" if "coronal" in planes else planes[0]
    bounds = [0.0] * 6
    volume.GetRASBounds(bounds)
    lo, hi, centre = np.array(bounds[0::2]), np.array(bounds[1::2]), (np.array(bounds[0::2]) + bounds[1::2]) / 2
    a, b = lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)
    normal = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    a[normal] = b[normal] = centre[normal]
    combo = widget.ui.refineSegmentComboBox
    combo.setCurrentIndex(combo.findData(sid))
    box = widget.tools.markupsNode("box")
    box.RemoveAllControlPoints()
    for corner in (a, b):
        box.AddControlPoint(*corner)
    record_view_plane(box, sliceNodeShowing(scene, plane))  # what placing it in that view records
    widget.onApplyRefine()
    waitForJob(widget, timeout)
    test.assertTrue(widget.logic.canUndo(seg), "the refinement was not applied")
    test.assertEqual(box.GetNumberOfControlPoints(), 0, "the box is cleared once applied")
    widget.onUndo()
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    return seg
