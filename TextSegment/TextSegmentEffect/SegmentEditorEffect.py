"""Segment Editor effect "Text prompt": type a structure and press Segment to fill the selected segment (or a new
one); then click a box (two corners) or +/- points on any slice view to refine it.

Registered at startup by the TextSegment module (``TextSegment.registerEditorEffect``), as Slicer's scripted-effect
template does. This file only wires the editor to ``TextSegmentLib.slicer.effect_logic.TextPromptEffectLogic``:
writes go through ``saveStateForUndo`` + ``modifySelectedSegmentByLabelmap``, so the editor's masking and overwrite
settings apply and Ctrl+Z undoes. The engine result and refinement state are shared with the TextSegment module
(one session per segmentation node). All torch work runs on TextSegment's worker thread.
"""

import logging
import os

import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

MODES = (("box", "Box", "Click two opposite corners of a box around the structure on a slice view"),
         ("positive", "+ point", "Click where the structure is missing"),
         ("negative", "- point", "Click where the segment covers something else"))  # fmt: skip


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """The "Text prompt" effect (thin: the work is in TextPromptEffectLogic)."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "Text prompt"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self._logic = None
        self._watcher = None
        self._onDone = None
        self._timer = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons", "TextSegment.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return (
            "<html>Type what to segment (e.g. <i>left hippocampus</i>) and press <b>Segment</b>: the selected segment "
            "is filled (the masking and overwrite settings below apply; Ctrl+Z undoes).<br>Then fix it on any slice "
            "view: <b>Box</b> (two clicks, opposite corners), <b>+ point</b> (add), <b>- point</b> (remove). Each "
            "box or point refines the segment from its current content on that slice and its neighbours.</html>"
        )

    # ------------------------------------------------------------------------------------------ options
    def setupOptionsFrame(self):
        self.promptEdit = qt.QLineEdit()
        self.promptEdit.placeholderText = "structure, e.g. left hippocampus"
        self.promptEdit.connect("returnPressed()", self.onSegment)
        self.newSegmentCheckBox = qt.QCheckBox("Into a new segment")
        self.newSegmentCheckBox.toolTip = "Add a segment named after the prompt instead of filling the selected one"
        self.segmentButton = qt.QPushButton("Segment")
        self.segmentButton.connect("clicked()", self.onSegment)
        row = qt.QHBoxLayout()
        row.addWidget(self.promptEdit)
        row.addWidget(self.segmentButton)
        self.scriptedEffect.addLabeledOptionsWidget("Prompt:", row)
        self.scriptedEffect.addOptionsWidget(self.newSegmentCheckBox)

        self.modeButtons = {}
        modes = qt.QHBoxLayout()
        group = qt.QButtonGroup(self.promptEdit)
        for kind, text, tip in MODES:
            button = qt.QPushButton(text)
            button.checkable = True
            button.toolTip = tip
            group.addButton(button)
            modes.addWidget(button)
            self.modeButtons[kind] = button
        self.modeButtons["box"].checked = True
        clear = qt.QPushButton("Clear clicks")
        clear.connect("clicked()", lambda: self.logic().clear())
        modes.addWidget(clear)
        self.scriptedEffect.addLabeledOptionsWidget("Refine:", modes)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

    def logic(self):
        """The effect's logic on TextSegment's logic (model, worker and session registry shared with the module)."""
        if self._logic is None:
            from TextSegmentLib.slicer.effect_logic import TextPromptEffectLogic
            from TextSegmentLib.slicer.logic import TextSegmentLogic

            self._logic = TextPromptEffectLogic(TextSegmentLogic(slicer.mrmlScene))
        return self._logic

    def _useModuleSettings(self):
        """The model and device chosen in the TextSegment module (its parameter node), if it can be read."""
        try:
            import TextSegment

            parameters = TextSegment.TextSegmentLogic().getParameterNode()
            self.logic().logic.model, self.logic().logic.device = parameters.model or "default", parameters.device
        except Exception:  # the module's settings are a convenience: the defaults work
            logging.debug("Text prompt: TextSegment's settings not read", exc_info=True)

    def deactivate(self):
        if self._logic is not None:
            self._logic.clear()

    # ------------------------------------------------------------------------------------------ actions
    def _nodes(self):
        parameters = self.scriptedEffect.parameterSetNode()
        volume = (
            parameters.GetSourceVolumeNode()
            if hasattr(parameters, "GetSourceVolumeNode")
            else parameters.GetMasterVolumeNode()
        )
        return parameters, parameters.GetSegmentationNode(), volume

    def onSegment(self):
        parameters, seg, volume = self._nodes()
        prompt = self.promptEdit.text.strip()
        if self._watcher is not None or seg is None or volume is None or not prompt:
            return
        with slicer.util.tryWithErrorDisplay("Text prompt could not segment.", waitCursor=True):
            if self.newSegmentCheckBox.checked:
                parameters.SetSelectedSegmentID(seg.GetSegmentation().AddEmptySegment("", prompt))
            segmentId = parameters.GetSelectedSegmentID()
            self._useModuleSettings()
            job = self.logic().segmentAsync(volume, prompt)
            self._run(job, lambda result: self._write(self.logic().segmentLabelmap(volume, seg, segmentId, result)))

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if viewWidget.className() != "qMRMLSliceWidget" or eventId != vtk.vtkCommand.LeftButtonPressEvent:
            return False
        if callerInteractor.GetShiftKey() or callerInteractor.GetControlKey() or callerInteractor.GetAltKey():
            return False
        kind = next((k for k, button in self.modeButtons.items() if button.checked), None)
        _, seg, _ = self._nodes()
        segmentId = self.scriptedEffect.parameterSetNode().GetSelectedSegmentID()
        if kind is None or seg is None or not segmentId or self._watcher is not None:
            return False
        ras = self.xyToRas(callerInteractor.GetEventPosition(), viewWidget)
        with slicer.util.tryWithErrorDisplay("Text prompt could not use the click.", waitCursor=True):
            placed = self.logic().click(kind, ras, self.scriptedEffect.viewNode(viewWidget))
            self.statusLabel.text = {"box corner": "Click the opposite corner of the box."}.get(placed, "")
            if placed != "box corner":  # a finished box or a point: refine now
                job = self.logic().refineAsync(seg, segmentId)
                self._run(job, lambda _: self._write(self.logic().refinedLabelmap(seg, segmentId)))
        return True

    def _write(self, labelmap):
        self.scriptedEffect.saveStateForUndo()
        self.scriptedEffect.modifySelectedSegmentByLabelmap(
            labelmap, slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeSet
        )

    # ------------------------------------------------------------------------------------------ jobs
    def _run(self, job, onDone):
        """Tick the worker's job from a zero-interval timer (the worker runs while the main thread waits in
        Python; Qt handles its events between ticks), then call ``onDone(result)`` on the main thread."""
        from TextSegmentLib.slicer.worker import JobWatcher

        self._onDone = onDone
        self._watcher = JobWatcher(job, self._status, self._ended)
        if self._timer is None:
            self._timer = qt.QTimer()
            self._timer.setInterval(0)
            self._timer.connect("timeout()", lambda: self._watcher is not None and self._watcher.tick())
        self._timer.start()

    def _status(self, status):
        self.statusLabel.text = f"{status.message} ({100 * status.fraction:.0f} %)" if status.message else ""

    def _ended(self, job):
        self._timer.stop()
        self._watcher, onDone, self._onDone = None, self._onDone, None
        if job.state == "done":
            self.statusLabel.text = f"{job.description}: done in {job.status().elapsed:.1f} s"
            try:
                onDone(job.result)
            except Exception as exc:
                logging.exception("Text prompt")
                slicer.util.errorDisplay(f"{job.description} failed: {exc}")
        elif job.state == "failed":
            self.statusLabel.text = ""
            slicer.util.errorDisplay(f"{job.description} failed: {job.error}", detailedText=job.traceback)
        else:
            self.statusLabel.text = f"{job.description}: cancelled"
