"""Box and +/- point tools: markups nodes, place mode in the slice views, and the view they were drawn on.

Slicer does not record which view a markup was placed in; when a box or point is placed (or moved), the tool asks
the crosshair node which slice view is under the mouse and records its slice normal in world coordinates
(``record_view_under_cursor``); the refinement maps it onto the volume's own slices.
"""

from typing import Any, Callable

import slicer
from slicer.util import VTKObservationMixin

from TextSegmentLib.slicer.markups import POINT_LABEL_ATTRIBUTE, clear_records, record_view_under_cursor

MARKUPS = {"box": "TextSegment box", "positive": "TextSegment +", "negative": "TextSegment -"}


class RefineTools(VTKObservationMixin):
    """The markups tools. ``ui``: the module's widgets (the three tool buttons); ``changed()``: called when a tool
    is switched on (the widget updates its buttons). Call :meth:`cleanup` when the widget goes."""

    def __init__(self, ui: Any, changed: Callable[[], None]) -> None:
        VTKObservationMixin.__init__(self)
        self.ui, self.changed = ui, changed

    def markupsNode(self, kind: str):
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
            if not self.hasObserver(node, event, self.onMarkupPlaced):
                self.addObserver(node, event, self.onMarkupPlaced)
        return node

    def onMarkupPlaced(self, caller, event) -> None:
        """Record the slice normal of the view under the mouse for the markup just placed (or the point moved)."""
        record_view_under_cursor(caller, slicer.mrmlScene)

    def existing(self, kind: str):
        """The tool's markups node when it holds something (else None)."""
        node = slicer.mrmlScene.GetFirstNodeByName(MARKUPS[kind])
        return node if node is not None and node.GetNumberOfControlPoints() > 0 else None

    def buttons(self) -> dict:
        return {
            "box": self.ui.boxButton,
            "positive": self.ui.positivePointButton,
            "negative": self.ui.negativePointButton,
        }

    def observeInteraction(self) -> None:
        """Un-check the tool buttons when place mode ends (one box placed, Escape, another module's tool)."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        self.addObserver(interaction, interaction.InteractionModeChangedEvent, self.onInteractionModeChanged)

    def onInteractionModeChanged(self, caller, event) -> None:
        if caller.GetCurrentInteractionMode() == caller.Place:
            return
        for button in self.buttons().values():
            button.blockSignals(True)
            button.checked = False
            button.blockSignals(False)

    def place(self, kind: str, on: bool) -> None:
        buttons = self.buttons()
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
        node = self.markupsNode(kind)
        if kind == "box":
            node.RemoveAllControlPoints()
        selection = slicer.app.applicationLogic().GetSelectionNode()
        selection.SetReferenceActivePlaceNodeClassName(node.GetClassName())
        selection.SetActivePlaceNodeID(node.GetID())
        interaction.SetPlaceModePersistence(0 if kind == "box" else 1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.changed()

    def clear(self) -> None:
        for kind in MARKUPS:
            node = slicer.mrmlScene.GetFirstNodeByName(MARKUPS[kind])
            if node is not None:
                node.RemoveAllControlPoints()
                clear_records(node)

    def cleanup(self) -> None:
        self.removeObservers()
