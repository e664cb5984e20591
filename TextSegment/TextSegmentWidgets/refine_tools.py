"""Box and +/- point tools: markups nodes, place mode in the slice views, and the plane of the view they were drawn on.

Slicer does not record which view a markup was placed in; when a box or point is placed (or moved), the tool asks
the crosshair node which slice view is under the mouse and records its plane (``record_view_plane``), so that the
refinement happens in that plane whichever of the axial, coronal or sagittal views was used.
"""

import slicer

from TextSegmentLib.slicer.markups import (
    PLANE_ATTRIBUTE,
    POINT_LABEL_ATTRIBUTE,
    POINT_PLANES_ATTRIBUTE,
    record_view_plane,
)

MARKUPS = {"box": "TextSegment box", "positive": "TextSegment +", "negative": "TextSegment -"}


class RefineToolsMixin:
    """Markups tools for TextSegmentWidget (uses ``self.ui``)."""

    def _markupsNode(self, kind: str):
        node = slicer.mrmlScene.GetFirstNodeByName(MARKUPS[kind])
        if node is None:
            cls = "vtkMRMLMarkupsROINode" if kind == "box" else "vtkMRMLMarkupsFiducialNode"
            node = slicer.mrmlScene.AddNewNodeByClass(cls, MARKUPS[kind])
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetSelectedColor(
                {"box": (1, 1, 0), "positive": (0, 1, 0), "negative": (1, 0, 0)}[kind]
            )
            if kind != "box":
                node.SetMarkupLabelFormat("+" if kind == "positive" else "-")
            if kind == "negative":
                node.SetAttribute(POINT_LABEL_ATTRIBUTE, "negative")
        events = [node.PointPositionDefinedEvent]  # placed; a moved point lies on the view it was dragged in
        if kind != "box":  # a box keeps the view it was drawn on when its handles are dragged elsewhere
            events.append(node.PointEndInteractionEvent)
        for event in events:
            if not self.hasObserver(node, event, self._onMarkupPlaced):
                self.addObserver(node, event, self._onMarkupPlaced)
        return node

    def _onMarkupPlaced(self, caller, event) -> None:
        """Record the plane of the slice view under the mouse for the markup just placed (or the point moved)."""
        crosshair = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
        sliceNode = crosshair.GetCursorPositionXYZ([0.0, 0.0, 0.0]) if crosshair is not None else None
        record_view_plane(caller, sliceNode)

    def _existingMarkups(self, kind: str):
        """The tool's markups node when it holds something (else None)."""
        node = slicer.mrmlScene.GetFirstNodeByName(MARKUPS[kind])
        return node if node is not None and node.GetNumberOfControlPoints() > 0 else None

    def _toolButtons(self) -> dict:
        return {
            "box": self.ui.boxButton,
            "positive": self.ui.positivePointButton,
            "negative": self.ui.negativePointButton,
        }

    def _observeInteraction(self) -> None:
        """Un-check the tool buttons when place mode ends (one box placed, Escape, another module's tool)."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        self.addObserver(interaction, interaction.InteractionModeChangedEvent, self._onInteractionModeChanged)

    def _onInteractionModeChanged(self, caller, event) -> None:
        if caller.GetCurrentInteractionMode() == caller.Place:
            return
        for button in self._toolButtons().values():
            button.blockSignals(True)
            button.checked = False
            button.blockSignals(False)

    def _place(self, kind: str, on: bool) -> None:
        buttons = self._toolButtons()
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if not on:
            if not any(b.checked for b in buttons.values()):
                interaction.SwitchToViewTransformMode()
            return
        for other, button in buttons.items():
            if other != kind and button.checked:
                button.blockSignals(True)
                button.checked = False
                button.blockSignals(False)
        node = self._markupsNode(kind)
        if kind == "box":
            node.RemoveAllControlPoints()
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(0 if kind == "box" else 1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self._updateButtons()

    def _clearMarkups(self) -> None:
        for kind in MARKUPS:
            node = slicer.mrmlScene.GetFirstNodeByName(MARKUPS[kind])
            if node is not None:
                node.RemoveAllControlPoints()
                for attribute in (PLANE_ATTRIBUTE, POINT_PLANES_ATTRIBUTE):
                    node.RemoveAttribute(attribute)
