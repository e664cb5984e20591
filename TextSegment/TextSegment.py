"""TextSegment: type what to segment ("left hippocampus", "brain"), get 3D segments; fix them with a box or +/- points.

What is where (docs/slicer.md has the details):

- this file: the module, its parameter node, the widget (wires the .ui to the logic and nothing else), the logic with
  Slicer's parameter node, and the self-test;
- ``TextSegmentWidgets/`` next to it: the widget's panels (Qt/Slicer only), each given the logic it works with;
- ``TextSegmentEffect/``: the Segment Editor effect "Text prompt", registered on ``startupCompleted()``;
- ``TextSegmentLib``: engine and MRML logic without Qt (``TextSegmentLib/slicer/``), shared with the effect, the
  console and the command line.

Threads: all torch work runs on one persistent worker thread. PythonQt keeps the interpreter lock while the main thread
is in C++, so the worker runs only while the main thread runs Python: the widget does not poll it from a slow timer
but lets a zero-interval timer call ``JobWatcher.tick``, which waits on the job for 30 ms with the lock released; Qt
handles its events between two ticks.
"""

import importlib.util
import logging
import os
import sys
import unittest
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


def _addSourceTreeLibrary() -> None:
    """Run from a source checkout: ``TextSegmentLib`` is in the repository root, one folder above this module.

    Slicer puts this module's folder on ``sys.path``; that is enough for ``TextSegmentWidgets`` and, in a built
    extension, for ``TextSegmentLib`` (CMake copies it next to this file). Only a checkout added under *Additional
    module paths* needs the repository root as well.
    """
    if importlib.util.find_spec("TextSegmentLib") is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if os.path.isfile(os.path.join(root, "TextSegmentLib", "__init__.py")):
            sys.path.append(root)


_addSourceTreeLibrary()
from TextSegmentWidgets.background import BackgroundPreparer  # noqa: E402
from TextSegmentWidgets.dependencies import dependencyProblems, ensureDependencies  # noqa: E402
from TextSegmentWidgets.model_panel import ModelPanel  # noqa: E402
from TextSegmentWidgets.prompts import PromptsPanel  # noqa: E402
from TextSegmentWidgets.refine_tools import RefineTools  # noqa: E402
from TextSegmentWidgets.self_test import runSelfTest  # noqa: E402

from TextSegmentLib.prompts import known_names  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic as _LibraryLogic  # noqa: E402
from TextSegmentLib.slicer.worker import CANCELLED, DONE, JobWatcher  # noqa: E402

#: (key sequence, widget method) while the module is shown
SHORTCUTS = (("Ctrl+Return", "onSegment"), ("Ctrl+Enter", "onSegment"), ("Ctrl+Z", "onUndo"))
#: (key sequence, tool button); with Shift, because the slice views use the plain letters (b/f: previous/next slice)
TOOL_SHORTCUTS = (("Shift+B", "boxButton"), ("Shift+P", "positivePointButton"), ("Shift+N", "negativePointButton"))


class TextSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "TextSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations"]  # its Segment Editor effect
        self.parent.contributors = ["TextSegment developers (TextSegment project)"]
        self.parent.helpText = (
            "Type what to segment, one structure per line, and press Segment (Ctrl+Enter). The default model knows "
            "brain MRI structures: for example <i>left hippocampus</i>, <i>brain</i>, <i>right putamen</i>. Fix a "
            "result with a box or +/- points on the axial, coronal or sagittal view, then Apply; Ctrl+Z undoes. The "
            "Segment Editor has the same as the effect <b>Text prompt</b>. "
            "From the Python console: <code>TextSegment.TextSegmentLogic().segment(volume, ['brain'])</code>. "
            "See <a href='https://github.com/TextSegment/SlicerTextSegment/blob/main/docs/slicer.md'>docs/slicer.md</a>."
        )
        self.parent.acknowledgementText = (
            "TextSegment is released under the Apache License 2.0 (see LICENSE). Its slice model follows the "
            "LangMedSAM design (a light promptable image encoder and mask decoder conditioned on text). The default "
            "model was trained on the Colin27 T1 head with the AAL, JHU and Brodmann atlases (Debian mricron-data), "
            "the Harvard-Oxford atlas and a head CT from InVesalius; it is evaluated on the MNI152 2009 template "
            "(nilearn). Prompts are encoded with all-MiniLM-L6-v2 (sentence-transformers). Built on 3D Slicer, "
            "PyTorch, SimpleITK and highdicom."
        )
        # the Segment Editor effect "Text prompt", registered as Slicer's scripted-effect template does
        slicer.app.connect("startupCompleted()", self.registerEditorEffect)

    def registerEditorEffect(self) -> None:
        """Register the Segment Editor effect "Text prompt" (TextSegmentEffect/SegmentEditorEffect.py)."""
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        instance = effects.qSlicerSegmentEditorScriptedEffect(None)
        path = os.path.join(os.path.dirname(__file__), "TextSegmentEffect", "SegmentEditorEffect.py")
        instance.setPythonSource(path.replace("\\", "/"))
        instance.self().register()


@parameterNodeWrapper
class TextSegmentParameterNode:
    """GUI state, saved with the scene."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    prompts: str = ""
    recentPrompts: str = ""
    model: str = "default"
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"
    sliceAxis: Annotated[str, Choice(["auto", "axial", "coronal", "sagittal"])] = "auto"  # auto: the model's planes
    ctWindow: Annotated[str, Choice(["auto", "soft_tissue", "lung", "bone", "brain"])] = "auto"
    presenceThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    minComponentMl: Annotated[float, WithinRange(0.0, 1000.0)] = 0.05
    minComponentPercent: Annotated[float, WithinRange(0.0, 100.0)] = 10.0  # of the largest part: islands below go
    fillHoles: bool = True
    largestOnly: bool = False


class TextSegmentLogic(ScriptedLoadableModuleLogic, _LibraryLogic):
    """The library's :class:`TextSegmentLib.slicer.logic.TextSegmentLogic` with Slicer's parameter node.

    Example (Python console)::

        logic = TextSegment.TextSegmentLogic()
        seg = logic.segment(getNode("MRHead"), ["left hippocampus", "right putamen"])
    """

    def __init__(self, scene=None, **kwargs) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _LibraryLogic.__init__(self, scene, **kwargs)

    def getParameterNode(self):
        return TextSegmentParameterNode(super().getParameterNode())


class TextSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the .ui to the logic. Its parts are panels that get the logic and what else they need passed in:
    ``prompts`` (PromptsPanel), ``tools`` (RefineTools), ``models`` (ModelPanel), ``background``
    (BackgroundPreparer)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.prompts = self.tools = self.models = self.background = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._watcher = None
        self._onJobDone = None
        self._progressDialog = None
        self._shortcuts = []
        self._timer = None

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/TextSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = TextSegmentLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(0)  # each tick waits on the job itself (JobWatcher); Qt runs its events in between
        self._timer.connect("timeout()", self._tick)
        self.makePanels()

        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.promptEdit.connect("textChanged()", self.prompts.onEdited)
        self.ui.promptLineEdit.connect("returnPressed()", self.prompts.addLine)
        self.ui.recentPromptsComboBox.connect("activated(int)", self.prompts.useRecent)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateResults)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.background.prepare)
        self.ui.resultsTable.connect("cellClicked(int,int)", self._selectResultRow)
        self.ui.boxButton.connect("toggled(bool)", lambda on: self.tools.place("box", on))
        self.ui.positivePointButton.connect("toggled(bool)", lambda on: self.tools.place("positive", on))
        self.ui.negativePointButton.connect("toggled(bool)", lambda on: self.tools.place("negative", on))
        self.ui.clearPromptsButton.connect("clicked(bool)", self.tools.clear)
        self.ui.applyRefineButton.connect("clicked(bool)", self.onApplyRefine)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.models.onModelChanged)
        self.ui.downloadButton.connect("clicked(bool)", lambda: self._job is None and self.models.onDownload())
        self.ui.importButton.connect("clicked(bool)", self.models.onImport)
        self.ui.checkUpdatesButton.connect("clicked(bool)", self.models.onCheckUpdates)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.models.updateDeviceHint)
        for keys, slot in [(k, getattr(self, m)) for k, m in SHORTCUTS] + [
            (k, getattr(self.ui, b).toggle) for k, b in TOOL_SHORTCUTS
        ]:
            shortcut = qt.QShortcut(qt.QKeySequence(keys), slicer.util.mainWindow())
            shortcut.connect("activated()", slot)
            shortcut.setEnabled(False)
            self._shortcuts.append(shortcut)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.tools.observeInteraction()
        self.initializeParameterNode()
        self.models.populate()
        self.prompts.setCompletions(known_names() + self.models.vocabulary(self._parameterNode.model))
        self.models.updateDeviceHint()  # reads torch only once the worker has imported it

    def makePanels(self) -> None:
        """The widget's parts, each given the logic and callbacks it needs (``self.ui`` and ``self.logic`` set)."""
        parameters = lambda: self._parameterNode  # noqa: E731
        self.prompts = PromptsPanel(self.ui, parameters, self._updateButtons)
        self.tools = RefineTools(self.ui, self._updateButtons)
        self.models = ModelPanel(
            self.ui, self.logic, parameters, self._start, self._prepareIfChanged, self.prompts.setCompletions
        )
        self.background = BackgroundPreparer(
            self.logic, self.ui, parameters, self._options, self.models, lambda: self._job is not None,
            lambda: self._timer.start(),
        )  # fmt: skip

    def _prepareIfChanged(self, *args) -> None:
        if self._timer is not None and self.background is not None:
            self.background.prepareIfChanged()

    def cleanup(self) -> None:
        """Module reload or application exit: nothing of this widget may stay alive (shortcuts, timer, observers)."""
        self.removeObservers()
        if self.tools is not None:
            self.tools.cleanup()
        if self.background is not None:
            self.background.cancel()
        if self._job is not None:
            self._job.cancel()
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None
        for shortcut in self._shortcuts:  # parented to the main window, they would outlive this widget
            shortcut.setEnabled(False)
            shortcut.setParent(None)
            shortcut.deleteLater()  # deleting a QObject removes its connections
        self._shortcuts = []
        if self._progressDialog is not None:
            self._progressDialog.close()
            self._progressDialog = None

    def enter(self) -> None:
        self.initializeParameterNode()
        for shortcut in self._shortcuts:
            shortcut.setEnabled(True)
        self.background.prepare()

    def exit(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.background.cancel()
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
            self.prompts.fillRecent()
            self._updateButtons()
            self._updateResults()

    # ------------------------------------------------------------------------------------------ jobs
    def _start(self, job, onDone, dialogTitle: Optional[str] = None) -> None:
        self.background.cancel()  # queued before this job on the worker: it stops at its next batch
        self._job, self._onJobDone = job, onDone
        self._watcher = JobWatcher(job, self._showStatus, self._jobEnded)
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        if dialogTitle:
            self._progressDialog = slicer.util.createProgressDialog(labelText=dialogTitle, maximum=100)
        self._updateButtons()
        self._timer.start()

    def _tick(self) -> None:
        """Zero-interval timer: wait up to 30 ms on the job (worker at full speed), then back to Qt's events."""
        background = self.background.watcher if self.background is not None else None
        watcher = self._watcher or background  # a job the user started, else the volume's preparation
        if watcher is not None:
            watcher.tick()
        background = self.background.watcher if self.background is not None else None
        if self._watcher is None and background is None and self._timer is not None:
            self._timer.stop()

    def _showStatus(self, status) -> None:
        self.ui.progressBar.value = int(100 * status.fraction)
        self.ui.statusLabel.text = f"{status.message} ({status.elapsed:.0f} s)" if status.message else ""
        if self._progressDialog is not None:
            self._progressDialog.value = int(100 * status.fraction)
            if self._progressDialog.wasCanceled:
                self._watcher.job.cancel()

    def _jobEnded(self, job) -> None:
        self._job, self._watcher = None, None
        if self._progressDialog is not None:
            self._progressDialog.close()
            self._progressDialog = None
        self.ui.progressBar.visible = False
        onDone, self._onJobDone = self._onJobDone, None
        if job.state == DONE:
            self.ui.statusLabel.text = f"{job.description}: done in {job.status().elapsed:.1f} s"
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
            "presence_threshold": p.presenceThreshold,
            "min_component_ml": p.minComponentMl,
            "min_component_fraction": p.minComponentPercent / 100.0,
            "fill_holes": p.fillHoles,
            "largest_only": True if p.largestOnly else None,  # unchecked: as the model card says per structure
        }
        if p.sliceAxis != "auto":  # one plane; auto segments every plane the model was trained on and fuses them
            options["slice_axis"] = p.sliceAxis
        if p.ctWindow != "auto":
            options["ct_window"] = p.ctWindow
        return options

    def onSegment(self) -> None:
        prompts, volume = self.prompts.prompts(), self._parameterNode.inputVolume if self._parameterNode else None
        if self._job is not None or not prompts or volume is None:
            return
        with slicer.util.tryWithErrorDisplay("TextSegment could not start.", waitCursor=True):
            if not ensureDependencies():
                return
            self.models.configureLogic()
            if not self.models.ensureModel(self.onSegment):
                return
            self.prompts.remember(prompts)
            output = self._parameterNode.outputSegmentation
            job = self.logic.segmentAsync(volume, prompts, **self._options())
            self._start(job, lambda result: self._applySegmentation(volume, result, output))

    def _applySegmentation(self, volume, result, output) -> None:
        segmentation = self.logic.applySegmentation(volume, result, output)
        self._parameterNode.outputSegmentation = segmentation
        segmentation.CreateClosedSurfaceRepresentation()
        self._updateResults()
        self.models.updateDeviceHint()

    def _updateResults(self, *args) -> None:
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        reports = self.logic.results(node) if node is not None else []
        table = self.ui.resultsTable
        table.setRowCount(len(reports))
        for row, r in enumerate(reports):
            cells = (r.prompt, "found" if r.found else "not found", f"{100 * r.confidence:.0f} %", f"{r.volume_ml:.1f}")
            for col, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setToolTip(f"read as: {getattr(r, 'reading', '')}")  # how the prompt was read (its query)
                table.setItem(row, col, item)
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
        box = self.tools.existing("box")
        points = [self.tools.existing(kind) for kind in ("positive", "negative")]
        # A box or points the model cannot use (another plane than it refines in, points on several slices or
        # views, an oblique view) raise here with a message that the dialog shows.
        with slicer.util.tryWithErrorDisplay("TextSegment could not refine.", waitCursor=True):
            job = self.logic.refineAsync(node, sid, box, points)
            self._start(job, lambda result: self._applyRefinement(node, sid))

    def _applyRefinement(self, node, sid) -> None:
        self.logic.applyRefinement(node, sid)
        self.tools.clear()
        self._updateResults()

    def onUndo(self) -> None:
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if self._job is None and node is not None and self.logic.canUndo(node):
            with slicer.util.tryWithErrorDisplay("TextSegment could not undo.", waitCursor=True):
                self.logic.undo(node)
            self._updateResults()

    # ------------------------------------------------------------------------------------------ state
    def _updateButtons(self, *args) -> None:
        p = self._parameterNode
        busy = self._job is not None
        ready = bool(p and p.inputVolume and self.prompts.prompts())
        self.ui.segmentButton.enabled = ready and not busy
        self.ui.cancelButton.enabled = busy
        node = p.outputSegmentation if p else None
        self.ui.applyRefineButton.enabled = bool(node and self.ui.refineSegmentComboBox.count) and not busy
        self.ui.undoButton.enabled = bool(node and self.logic.canUndo(node)) and not busy
        self._prepareIfChanged()  # another plane, CT window, device or model: other embeddings to prepare


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class TextSegmentTest(ScriptedLoadableModuleTest):
    """The module's GUI flow on a small synthetic volume with the embedded default model (no download, no install).

    Without PyTorch and the other packages it skips and says what is missing: installing gigabytes is not a test's
    job (nor an extension build machine's). ``Reload and Test`` calls :meth:`runTest`; ctest runs ``test_*``.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        try:
            self.test_TextSegment1()
        except unittest.SkipTest as skip:
            logging.warning(str(skip))
            self.delayDisplay(str(skip))

    def test_TextSegment1(self):
        missing = dependencyProblems()
        if missing:
            raise unittest.SkipTest(
                "TextSegment self-test skipped: " + "; ".join(missing) + ". Nothing was installed or downloaded; "
                "open the TextSegment module and press Segment to install them."
            )
        runSelfTest(self, slicer.modules.textsegment.widgetRepresentation().self())
        self.delayDisplay("TextSegment test passed")
