"""TextSegment: type what to segment ("liver", "left kidney"), get 3D segments; fix them with a box or +/- points.

The widget only wires the GUI to :class:`TextSegmentLogic` (from ``TextSegmentLib``); all torch work runs on one
persistent worker thread that the widget polls with a timer, so Slicer stays responsive and Cancel works.
"""

import importlib.util
import logging
import os
import sys
from typing import Annotated, Optional

import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _ensureLibraryPath() -> None:
    """Built: TextSegmentLib is next to this file. From the source tree: it is one folder up; add that to sys.path."""
    here = os.path.dirname(os.path.abspath(__file__))
    if importlib.util.find_spec("TextSegmentGui") is None and here not in sys.path:
        sys.path.insert(0, here)
    if importlib.util.find_spec("TextSegmentLib") is None:
        root = os.path.dirname(here)
        if os.path.isdir(os.path.join(root, "TextSegmentLib")) and root not in sys.path:
            sys.path.insert(0, root)


_ensureLibraryPath()
from TextSegmentGui.dependencies import ensureDependencies  # noqa: E402
from TextSegmentGui.model_panel import ModelPanelMixin  # noqa: E402
from TextSegmentGui.prompts import PromptsMixin  # noqa: E402
from TextSegmentGui.refine_tools import MARKUPS, RefineToolsMixin  # noqa: E402

from TextSegmentLib.prompts import known_names  # noqa: E402
from TextSegmentLib.slicer_logic import TextSegmentLogic as _LibraryLogic  # noqa: E402
from TextSegmentLib.worker import CANCELLED, DONE  # noqa: E402


class TextSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TextSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["TextSegment developers"]
        self.parent.helpText = (
            "Type what to segment, one structure per line (for example <i>liver</i>, <i>left kidney</i>), and press "
            "Segment (Ctrl+Enter). Fix a result with a box or +/- points on a slice, then Apply; Ctrl+Z undoes. "
            "From the Python console: <code>TextSegment.TextSegmentLogic().segment(volume, ['liver'])</code>."
        )
        self.parent.acknowledgementText = "Light text-prompted slice model (LangMedSAM design) on 3D Slicer."


@parameterNodeWrapper
class TextSegmentParameterNode:
    """GUI state, saved with the scene."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    prompts: str = ""
    recentPrompts: str = ""
    model: str = "default"
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"
    sliceAxis: Annotated[str, Choice(["axial", "coronal", "sagittal"])] = "axial"
    ctWindow: Annotated[str, Choice(["auto", "soft_tissue", "lung", "bone", "brain"])] = "auto"
    presenceThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    minComponentMl: Annotated[float, WithinRange(0.0, 1000.0)] = 0.05
    fillHoles: bool = True
    largestOnly: bool = False


class TextSegmentLogic(ScriptedLoadableModuleLogic, _LibraryLogic):
    """The library's :class:`TextSegmentLib.slicer_logic.TextSegmentLogic` with Slicer's parameter node.

    Example (Python console)::

        logic = TextSegment.TextSegmentLogic()
        seg = logic.segment(getNode("CTACardio"), ["liver", "aorta"])
    """

    def __init__(self, scene=None, **kwargs) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _LibraryLogic.__init__(self, scene, **kwargs)

    def getParameterNode(self):
        return TextSegmentParameterNode(super().getParameterNode())


class TextSegmentWidget(
    PromptsMixin, RefineToolsMixin, ModelPanelMixin, ScriptedLoadableModuleWidget, VTKObservationMixin
):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._onJobDone = None
        self._progressDialog = None
        self._shortcuts = []

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TextSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TextSegmentLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._poll)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.promptEdit.connect("textChanged()", self._onPromptsEdited)
        self.ui.promptLineEdit.connect("returnPressed()", self._addPromptLine)
        self.ui.recentPromptsComboBox.connect("activated(int)", self._useRecent)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateResults)
        self.ui.resultsTable.connect("cellClicked(int,int)", self._selectResultRow)
        self.ui.boxButton.connect("toggled(bool)", lambda on: self._place("box", on))
        self.ui.positivePointButton.connect("toggled(bool)", lambda on: self._place("positive", on))
        self.ui.negativePointButton.connect("toggled(bool)", lambda on: self._place("negative", on))
        self.ui.clearPromptsButton.connect("clicked(bool)", self._clearMarkups)
        self.ui.applyRefineButton.connect("clicked(bool)", self.onApplyRefine)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._onModelChanged)
        self.ui.downloadButton.connect("clicked(bool)", self.onDownload)
        self.ui.importButton.connect("clicked(bool)", self.onImport)
        self.ui.checkUpdatesButton.connect("clicked(bool)", self.onCheckUpdates)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self._updateDeviceHint)
        for keys, slot in (("Ctrl+Return", self.onSegment), ("Ctrl+Enter", self.onSegment), ("Ctrl+Z", self.onUndo)):
            shortcut = qt.QShortcut(qt.QKeySequence(keys), slicer.util.mainWindow())
            shortcut.connect("activated()", slot)
            shortcut.setEnabled(False)
            self._shortcuts.append(shortcut)
        for key, button in (
            ("B", self.ui.boxButton),
            ("P", self.ui.positivePointButton),
            ("N", self.ui.negativePointButton),
        ):
            shortcut = qt.QShortcut(qt.QKeySequence(key), slicer.util.mainWindow())
            shortcut.connect("activated()", button.toggle)
            shortcut.setEnabled(False)
            self._shortcuts.append(shortcut)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._observeInteraction()
        self.initializeParameterNode()
        self._populateModels()
        self._setCompletions(known_names() + self._vocabulary(self._parameterNode.model))
        if "torch" in sys.modules:  # importing torch only for a hint would slow down opening the module
            self._updateDeviceHint()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._job is not None:
            self._job.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(True)

    def exit(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None:
            self._job.cancel()
        self.logic.forget()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            if self.ui.promptEdit.toPlainText() != self._parameterNode.prompts:
                self.ui.promptEdit.setPlainText(self._parameterNode.prompts)
            self._fillRecent()
            self._updateButtons()
            self._updateResults()

    # ------------------------------------------------------------------------------------------ jobs
    def _start(self, job, onDone, dialogTitle: Optional[str] = None) -> None:
        self._job, self._onJobDone = job, onDone
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        if dialogTitle:
            self._progressDialog = slicer.util.createProgressDialog(labelText=dialogTitle, maximum=100)
        self._updateButtons()
        self._timer.start()

    def _poll(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        status = job.status()
        self.ui.progressBar.value = int(100 * status.fraction)
        self.ui.statusLabel.text = f"{status.message} ({status.elapsed:.0f} s)" if status.message else ""
        if self._progressDialog is not None:
            self._progressDialog.value = int(100 * status.fraction)
            if self._progressDialog.wasCanceled:
                job.cancel()
        if not job.done:
            return
        self._timer.stop()
        self._job = None
        if self._progressDialog is not None:
            self._progressDialog.close()
            self._progressDialog = None
        self.ui.progressBar.visible = False
        onDone, self._onJobDone = self._onJobDone, None
        if job.state == DONE:
            self.ui.statusLabel.text = f"{job.description}: done in {status.elapsed:.1f} s"
            try:
                onDone(job.result)
            except Exception as exc:
                logging.exception("TextSegment")
                slicer.util.errorDisplay(f"{job.description} failed: {exc}", detailedText=_traceback(exc))
        elif job.state == CANCELLED:
            self.ui.statusLabel.text = f"{job.description}: cancelled; nothing was changed"
        else:
            self.ui.statusLabel.text = f"{job.description}: failed"
            slicer.util.errorDisplay(f"{job.description} failed: {job.error}", detailedText=job.traceback)
        self._updateButtons()

    def onCancel(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self.ui.statusLabel.text = "cancelling..."

    # ------------------------------------------------------------------------------------------ segment
    def _options(self) -> dict:
        p = self._parameterNode
        options = {
            "slice_axis": p.sliceAxis,
            "presence_threshold": p.presenceThreshold,
            "min_component_ml": p.minComponentMl,
            "fill_holes": p.fillHoles,
            "largest_only": p.largestOnly,
        }
        if p.ctWindow != "auto":
            options["ct_window"] = p.ctWindow
        return options

    def onSegment(self) -> None:
        prompts, volume = self._prompts(), self._parameterNode.inputVolume if self._parameterNode else None
        if self._job is not None or not prompts or volume is None:
            return
        with slicer.util.tryWithErrorDisplay("TextSegment could not start.", waitCursor=True):
            if not ensureDependencies():
                return
            self._configureLogic()
            if not self._ensureModel(self.onSegment):
                return
            self._remember(prompts)
            output = self._parameterNode.outputSegmentation
            job = self.logic.segmentAsync(volume, prompts, **self._options())
            self._start(job, lambda result: self._applySegmentation(volume, result, output))

    def _applySegmentation(self, volume, result, output) -> None:
        segmentation = self.logic.applySegmentation(volume, result, output)
        self._parameterNode.outputSegmentation = segmentation
        segmentation.CreateClosedSurfaceRepresentation()
        self._updateResults()
        self._updateDeviceHint()

    def _updateResults(self, *args) -> None:
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        reports = self.logic.results(node) if node is not None else []
        table = self.ui.resultsTable
        table.setRowCount(len(reports))
        for row, r in enumerate(reports):
            cells = (r.prompt, "found" if r.found else "not found", f"{100 * r.confidence:.0f} %", f"{r.volume_ml:.1f}")
            for col, text in enumerate(cells):
                table.setItem(row, col, qt.QTableWidgetItem(text))
        combo = self.ui.refineSegmentComboBox
        current = combo.currentData
        combo.clear()
        for sid in self.logic.segmentIds(node) if node is not None else []:
            combo.addItem(node.GetSegmentation().GetSegment(sid).GetName(), sid)
        if current:
            combo.setCurrentIndex(max(0, combo.findData(current)))
        self._updateButtons()

    def _selectResultRow(self, row: int, column: int) -> None:
        ids = self.logic.segmentIds(self._parameterNode.outputSegmentation, existingOnly=False)
        index = self.ui.refineSegmentComboBox.findData(ids[row]) if row < len(ids) else -1
        if index >= 0:
            self.ui.refineSegmentComboBox.setCurrentIndex(index)

    # ------------------------------------------------------------------------------------------ refine
    def onApplyRefine(self) -> None:
        node, sid = self._parameterNode.outputSegmentation, self.ui.refineSegmentComboBox.currentData
        if self._job is not None or node is None or not sid:
            return
        box = slicer.mrmlScene.GetFirstNodeByName(MARKUPS["box"])
        box = box if box is not None and box.GetNumberOfControlPoints() > 0 else None
        points = [slicer.mrmlScene.GetFirstNodeByName(MARKUPS[k]) for k in ("positive", "negative")]
        with slicer.util.tryWithErrorDisplay("TextSegment could not refine.", waitCursor=True):
            job = self.logic.refineAsync(node, sid, box, points)
            self._start(job, lambda result: self._applyRefinement(node, sid))

    def _applyRefinement(self, node, sid) -> None:
        self.logic.applyRefinement(node, sid)
        self._clearMarkups()
        self._updateResults()

    def onUndo(self) -> None:
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if self._job is None and node is not None and self.logic.canUndo(node):
            with slicer.util.tryWithErrorDisplay("TextSegment could not undo.", waitCursor=True):
                self.logic.undo(node)
            self._updateResults()

    # ------------------------------------------------------------------------------------------ model
    # ------------------------------------------------------------------------------------------ state
    def _updateButtons(self, *args) -> None:
        p = self._parameterNode
        busy = self._job is not None
        ready = bool(p and p.inputVolume and self._prompts())
        self.ui.segmentButton.enabled = ready and not busy
        self.ui.cancelButton.enabled = busy
        node = p.outputSegmentation if p else None
        self.ui.applyRefineButton.enabled = bool(node and self.ui.refineSegmentComboBox.count) and not busy
        self.ui.undoButton.enabled = bool(node and self.logic.canUndo(node)) and not busy


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class TextSegmentTest(ScriptedLoadableModuleTest):
    """Runs the whole flow inside Slicer on a sample volume with a tiny random-weight model (no download)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_TextSegment1()

    def test_TextSegment1(self):
        if not ensureDependencies(askConfirmation=False):
            self.delayDisplay("Dependencies are missing; test skipped")
            return
        import tempfile

        import numpy as np
        import SampleData

        from TextSegmentLib import slicer_bridge as bridge
        from TextSegmentLib.checkpoint import save_bundle
        from TextSegmentLib.model import build_model

        volume = SampleData.SampleDataLogic().downloadSample("MRHead")
        folder = save_bundle(
            build_model({"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}),
            os.path.join(tempfile.mkdtemp(), "tiny"),
            {"name": "tiny"},
        )
        logic = TextSegmentLogic(model=str(folder), device="cpu")
        options = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1}
        seg = logic.segment(volume, ["brain", "left hippocampus"], **options)
        names = [seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
        self.assertEqual(names, ["brain", "left hippocampus"])
        sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
        before = bridge.segment_to_array(seg, sid, volume)
        np.testing.assert_array_equal(before, logic._sessions[seg.GetID()].result.mask(0))

        # A box on the middle slice of the axis the model slices along (whatever the volume's storage order).
        from TextSegmentLib.engine.volume import AXIS_NORMAL

        prepared = logic._sessions[seg.GetID()].result.volume
        axis = prepared.reorientation.permutation[AXIS_NORMAL[prepared.axis]]
        dims = np.array(volume.GetImageData().GetDimensions(), float)
        lo, hi = dims * 0.25, dims * 0.75
        lo[axis] = hi[axis] = dims[axis] // 2
        _, ijk_to_ras = bridge.volume_to_array(volume, copy=False)
        lo, hi = (ijk_to_ras @ np.r_[lo, 1.0])[:3], (ijk_to_ras @ np.r_[hi, 1.0])[:3]
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
        roi.SetCenter(*((lo + hi) / 2))
        roi.SetSize(*abs(hi - lo))
        logic.refine(seg, sid, roiNode=roi)
        self.assertTrue(logic.undo(seg))
        np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)

        # The widget: prompts in, Segment, wait for the worker while the GUI keeps running.
        widget = slicer.modules.textsegment.widgetRepresentation().self()
        widget.logic.model, widget._parameterNode.model = str(folder), str(folder)
        widget._parameterNode.inputVolume = volume
        widget._parameterNode.presenceThreshold = 0.0
        widget.ui.promptEdit.setPlainText("brain")
        widget.onSegment()
        while widget._job is not None:
            slicer.app.processEvents()
        self.assertGreater(widget.ui.resultsTable.rowCount, 0)
        self.delayDisplay("TextSegment test passed")
