"""What the Segment Editor effect "Text prompt" does, without Qt: text -> the selected segment; a box and +/- clicks
on whatever slice view -> a refinement of it. The effect file (TextSegment/TextSegmentEffect/) only wires Slicer's
editor to this class.

The editor decides how a new segment content is written: the effect hands the labelmap made here to
``modifySelectedSegmentByLabelmap`` (after ``saveStateForUndo``), which honours the editor's masking ("editable
area", intensity range) and overwrite settings ("overwrite other segments") and makes Ctrl+Z work. Tests write the
labelmaps with the same C++ logic (``vtkSlicerSegmentEditorLogic.ModifySegmentByLabelmap``) through slicer-core.

Clicks: a box is two clicks (opposite corners) on one slice view; + and - clicks add points. Each click records the
view's slice normal in world coordinates (:mod:`.planes` maps it onto the volume's slices); a click on a view showing
other slices starts a new set of clicks. The engine result and undo state are the scene's session registry's, shared
with the TextSegment module.

Example (``slicer-core``)::

    effect = TextPromptEffectLogic(TextSegmentLogic(scene, model=bundle))
    job = effect.segmentAsync(volume, "left hippocampus")          # then, when done:
    image = effect.segmentLabelmap(volume, seg_node, "Segment_1", job.result)
    scriptedEffect.modifySelectedSegmentByLabelmap(image, ModificationModeSet)   # in the effect
    effect.click("box", ras1, red_slice_node); effect.click("box", ras2, red_slice_node)
    job = effect.refineAsync(seg_node, "Segment_1")                # then: effect.refinedLabelmap(...) likewise
"""

from typing import Any, Dict, List, Optional

import numpy as np

from . import bridge
from .edits import current_mask
from .inputs import check_grid
from .markups import POINT_LABEL_ATTRIBUTE, RefinePrompts, clear_records, record_view_normal
from .planes import slice_normal_world
from .worker import Job

#: the effect's own markups (shown in the views while the user clicks)
EFFECT_MARKUPS = {"box": "Text prompt box", "positive": "Text prompt +", "negative": "Text prompt -"}
#: two view normals closer than this (cosine) are the same view orientation
SAME_VIEW_COSINE = 0.999


class TextPromptEffectLogic:
    """The effect's state and actions; ``logic`` is a :class:`~.logic.TextSegmentLogic` (model, worker, sessions)."""

    def __init__(self, logic: Any) -> None:
        self.logic = logic
        self.scene = logic.scene
        self._normal: Optional[np.ndarray] = None  # the view orientation of the current clicks
        self._corners: List[List[float]] = []  # the box's corners clicked so far (an ROI node keeps only its centre)

    # ------------------------------------------------------------------------------------------ clicks
    def markupsNode(self, kind: str) -> Any:
        """The effect's markups node of ``kind`` ("box", "positive", "negative"), made on first use."""
        name = EFFECT_MARKUPS[kind]
        node = self.scene.GetFirstNodeByName(name)
        if node is None:
            cls = "vtkMRMLMarkupsROINode" if kind == "box" else "vtkMRMLMarkupsFiducialNode"
            node = self.scene.AddNewNodeByClass(cls, name)
            if kind == "negative":
                node.SetAttribute(POINT_LABEL_ATTRIBUTE, "negative")
            if hasattr(node, "CreateDefaultDisplayNodes"):
                node.CreateDefaultDisplayNodes()
        return node

    def click(self, kind: str, ras: Any, slice_node: Any) -> str:
        """A click of the box (``kind`` "box": first corner, then the opposite one) or of a +/- point at world
        position ``ras`` on ``slice_node``'s view; returns what is placed now ("box corner", "box", "+", "-")."""
        if kind not in EFFECT_MARKUPS:
            raise ValueError(f"kind must be one of {sorted(EFFECT_MARKUPS)}, not {kind!r}")
        normal = slice_normal_world(slice_node)
        if normal is None:
            raise bridge.BridgeError("click on a slice view (axial, coronal or sagittal); the 3D view has no slice")
        if self._normal is not None and abs(float(self._normal @ normal)) < SAME_VIEW_COSINE:
            self.clear()  # another view: a refinement uses one slice, these clicks start anew
        self._normal = normal
        node = self.markupsNode(kind)
        position = [float(v) for v in ras[:3]]
        if kind == "box":
            if len(self._corners) != 1 or not self._onFirstCornerSlice(position):
                self._corners = []
            self._corners.append(position)
            node = self._freshBox(node)
            for corner in self._corners:  # two corners: MRML makes the box (centre and size)
                self._addPoint(node, corner)
            record_view_normal(node, normal)
            return "box" if len(self._corners) == 2 else "box corner"
        self._addPoint(node, position)
        record_view_normal(node, normal)
        return "+" if kind == "positive" else "-"

    def _addPoint(self, node: Any, position: List[float]) -> None:
        import vtk  # noqa: PLC0415 (slicer-core or Slicer)

        node.AddControlPointWorld(vtk.vtkVector3d(*position))

    def _freshBox(self, node: Any) -> Any:
        """An empty box node (a finished ROI keeps one control point, its centre, and takes no new corners)."""
        self.scene.RemoveNode(node)
        return self.markupsNode("box")

    def _onFirstCornerSlice(self, position: List[float]) -> bool:
        """Whether ``position`` lies on the slice of the box's first corner (else the box starts again)."""
        offset = np.asarray(position) - np.asarray(self._corners[0])
        return self._normal is not None and abs(float(self._normal @ offset)) < 1e-3

    def clicks(self) -> Dict[str, int]:
        """Box corners and +/- points clicked so far."""
        counts = {kind: self.markupsNode(kind).GetNumberOfControlPoints() for kind in ("positive", "negative")}
        return {"box": len(self._corners), **counts}

    def ready(self) -> bool:
        """Whether there is something to refine with: a complete box or at least one point."""
        counts = self.clicks()
        return counts["box"] == 2 or counts["positive"] + counts["negative"] > 0

    def clear(self) -> None:
        """Remove all clicks."""
        for kind in EFFECT_MARKUPS:
            node = self.scene.GetFirstNodeByName(EFFECT_MARKUPS[kind])
            if node is not None:
                node.RemoveAllControlPoints()
                clear_records(node)
        self._normal = None
        self._corners = []

    # ------------------------------------------------------------------------------------------ text
    def segmentAsync(self, volumeNode: Any, prompt: str, **options: Any) -> Job:
        """Segment ``prompt`` in ``volumeNode`` on the worker (one prompt: it goes into one segment)."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise bridge.BridgeError("type what to segment (e.g. 'left hippocampus') first")
        return self.logic.segmentAsync(volumeNode, [prompt], **options)

    def segmentLabelmap(self, volumeNode: Any, segmentationNode: Any, segmentId: str, result: Any) -> Any:
        """The finished text result as a labelmap for the editor to write into ``segmentId``; the segment becomes
        refinable (the session registry knows its engine result)."""
        check_grid(volumeNode, result)
        self.logic.adoptSegment(segmentationNode, volumeNode, result, 0, segmentId)
        return self.labelmap(result.mask(0), volumeNode, segmentationNode)

    def report(self, result: Any) -> Any:
        """The engine's report of the (one) prompt: found, confidence, volume, warnings."""
        return result.segments[0]

    # ------------------------------------------------------------------------------------------ refine
    def prompts(self, segmentationNode: Any, segmentId: str) -> RefinePrompts:
        """The clicks as the refinement's slice, box and points in the volume's voxels. The box is the rectangle of
        the two corners clicked (an ROI node keeps only an axis-aligned box around them)."""
        if not self.ready():
            raise bridge.BridgeError("draw a box (two clicks) or place a + or - point on a slice view first")
        counts = self.clicks()
        box = self.markupsNode("box") if counts["box"] == 2 else None
        points = [self.markupsNode(k) for k in ("positive", "negative") if counts[k]]
        _, p = self.logic.refinePrompts(segmentationNode, segmentId, box, points or None)
        if box is not None:
            session, _, _ = self.logic._session_for(segmentationNode, segmentId)
            volumeNode = self.scene.GetNodeByID(session.volume_id)
            ras_to_ijk = bridge.ras_to_ijk(volumeNode, None)
            corners = [(ras_to_ijk @ np.r_[c, 1.0])[:3] for c in self._corners]
            lo, hi = np.minimum(*corners), np.maximum(*corners)
            lo[p.axis] = hi[p.axis] = p.slice_ijk[p.axis]
            p.box = (tuple(float(v) for v in lo), tuple(float(v) for v in hi))  # type: ignore[assignment]
        return p

    def refineAsync(self, segmentationNode: Any, segmentId: str, maxPropagation: Optional[int] = None) -> Job:
        """Refine ``segmentId`` from its current content with the clicks, on the worker."""
        p = self.prompts(segmentationNode, segmentId)
        return self.logic.refinePromptsAsync(segmentationNode, segmentId, p, maxPropagation)

    def refinedLabelmap(self, segmentationNode: Any, segmentId: str) -> Any:
        """The segment's content now with what the finished refinement changed, as a labelmap for the editor; the
        clicks are cleared."""
        session, _, _ = self.logic._session_for(segmentationNode, segmentId)
        volumeNode = self.scene.GetNodeByID(session.volume_id)
        change = self.logic.refinementChange(segmentationNode, segmentId)
        mask = change.apply(current_mask(segmentationNode, segmentId, volumeNode), undo=False)
        self.clear()
        return self.labelmap(mask, volumeNode, segmentationNode)

    # ------------------------------------------------------------------------------------------ writing
    @staticmethod
    def labelmap(mask: np.ndarray, volumeNode: Any, segmentationNode: Any) -> Any:
        """A (k, j, i) mask on ``volumeNode``'s grid -> vtkOrientedImageData (0/1) in the segmentation's frame."""
        _, ijk_to_ras = bridge.volume_to_array(volumeNode, copy=False)
        to_segmentation = bridge.transform_between(volumeNode, segmentationNode)
        return bridge.oriented_image(np.asarray(mask, bool), to_segmentation @ ijk_to_ras)
