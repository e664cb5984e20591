"""The Segment Editor effect file (TextSegment/TextSegmentEffect/SegmentEditorEffect.py) driven as the editor drives
it: Segment from the text field, then left clicks on axial, coronal and sagittal slice views. Real MRML (slicer-core),
real effect logic, worker and a tiny model; the editor's writes and undo are Slicer's own C++ logic
(vtkSlicerSegmentEditorLogic). Stand-ins (thin): Qt, the scripted-effect base class (its xyToRas), the slice view
widget and interactor, and the editor's scriptedEffect object that forwards to that C++ logic.
"""

import contextlib
import importlib.util
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
pytest.importorskip("torch")

from mrml_helpers import changed_indices, head_array, slice_view, three_plane_bundle  # noqa: E402

from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.effect_logic import TextPromptEffectLogic  # noqa: E402
from TextSegmentLib.slicer.logic import TextSegmentLogic  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402

EFFECT = Path(__file__).resolve().parents[1] / "TextSegment" / "TextSegmentEffect" / "SegmentEditorEffect.py"
IJK_TO_RAS = np.diag([-3.0, -2.0, 2.5, 1.0])
OPTIONS = {"presence_threshold": 0.0, "min_component_ml": 0.0, "min_slices": 1, "fill_holes": False}


class ViewWidget:
    """qMRMLSliceWidget: its slice node; ``xy`` (pixels) -> RAS as the view would map them."""

    def __init__(self, slice_node):
        self.sliceNode, self.positions = slice_node, {}

    def className(self):
        return "qMRMLSliceWidget"


class Interactor:
    def __init__(self, xy):
        self.xy = xy

    def GetEventPosition(self):
        return self.xy

    def GetShiftKey(self):
        return 0

    GetControlKey = GetAltKey = GetShiftKey


class ScriptedEffect:
    """The editor's side of a scripted effect, forwarding to vtkSlicerSegmentEditorLogic."""

    def __init__(self, scene, seg, volume):
        self.node = slicer.vtkMRMLSegmentEditorNode()
        scene.AddNode(self.node)
        self.node.SetAndObserveSegmentationNode(seg)
        self.node.SetAndObserveSourceVolumeNode(volume)
        self.editor = slicer.vtkSlicerSegmentEditorLogic()
        self.editor.SetMRMLScene(scene)
        self.editor.SetSegmentEditorNode(self.node)
        self.editor.SetSegmentationNode(seg)
        self.editor.SetSourceVolumeNode(volume)
        self.saved = 0

    def parameterSetNode(self):
        return self.node

    def viewNode(self, viewWidget):
        return viewWidget.sliceNode

    def saveStateForUndo(self):
        self.saved += 1
        assert self.editor.SaveStateForUndo()

    def modifySelectedSegmentByLabelmap(self, image, mode):
        seg, sid = self.node.GetSegmentationNode(), self.node.GetSelectedSegmentID()
        self.editor.ModifySegmentByLabelmap(seg, sid, image, mode, True, False)

    def addOptionsWidget(self, *args):
        pass

    addLabeledOptionsWidget = addOptionsWidget


@pytest.fixture
def effect_module(monkeypatch):
    base = types.ModuleType("SegmentEditorEffects")

    class AbstractScriptedSegmentEditorEffect:
        def __init__(self, scriptedEffect):
            self.scriptedEffect = scriptedEffect

        def xyToRas(self, xy, viewWidget):
            return viewWidget.positions[tuple(xy)]

    base.AbstractScriptedSegmentEditorEffect = AbstractScriptedSegmentEditorEffect
    monkeypatch.setitem(sys.modules, "SegmentEditorEffects", base)
    qt = mock.MagicMock()
    for widget in ("QPushButton", "QLineEdit", "QCheckBox", "QLabel"):  # each call a widget of its own
        getattr(qt, widget).side_effect = lambda *args, **kwargs: mock.MagicMock()
    monkeypatch.setitem(sys.modules, "qt", qt)
    modes = types.SimpleNamespace(ModificationModeSet=slicer.vtkSlicerSegmentEditorLogic.ModificationModeSet)
    monkeypatch.setattr(slicer, "qSlicerSegmentEditorAbstractEffect", modes, raising=False)
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *a, **k: contextlib.nullcontext(), raising=False)
    errors = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **k: errors.append(text), raising=False)
    spec = importlib.util.spec_from_file_location("TextSegmentEffectUnderTest", EFFECT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.errors = errors
    return module


@pytest.fixture(scope="module")
def worker():
    w = Worker(name="test-effect-file-worker")
    yield w
    w.shutdown()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return three_plane_bundle(tmp_path_factory.mktemp("bundles"))


def _finish(effect, timeout=120.0):
    import time

    deadline = time.monotonic() + timeout
    while effect._watcher is not None and time.monotonic() < deadline:
        effect._watcher.tick()
    assert effect._watcher is None


def test_the_effect_segments_then_refines_on_each_slice_view(effect_module, bundle, worker):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scene = slicer.vtkMRMLScene()
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
        volume = bridge.array_to_volume(scene, head_array(), IJK_TO_RAS, name="head")
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
        bridge.prepare_segmentation_node(seg, volume)
        seg.GetSegmentation().AddEmptySegment("Segment_1", "Segment_1")
        scripted = ScriptedEffect(scene, seg, volume)
        scripted.node.SetSelectedSegmentID("Segment_1")
        effect = effect_module.SegmentEditorEffect(scripted)
        assert scripted.name == "Text prompt" and scripted.perSegment and scripted.requireSegments
        effect.setupOptionsFrame()
        logic = TextSegmentLogic(scene, model=str(bundle), device="cpu", worker=worker)
        effect._logic = TextPromptEffectLogic(logic)
        effect.promptEdit.text = "brain"
        effect.newSegmentCheckBox.checked = False
        segment_async = logic.segmentAsync
        logic.segmentAsync = lambda volume, prompts, **options: segment_async(volume, prompts, **OPTIONS)
        effect.onSegment()
        _finish(effect)
        segment = bridge.segment_to_array(seg, "Segment_1", volume).astype(bool)
        assert segment.any() and scripted.saved == 1 and effect_module.errors == []

        for orientation, axis, index, corners in (
            ("Axial", 2, 8, ((3.0, 4.0, 8.0), (20.0, 24.0, 8.0))),
            ("Coronal", 1, 12, ((3.0, 12.0, 2.0), (20.0, 12.0, 13.0))),
            ("Sagittal", 0, 10, ((10.0, 4.0, 2.0), (10.0, 24.0, 13.0))),
        ):
            view = ViewWidget(slice_view(scene, orientation))
            view.positions = {(10, 10): (IJK_TO_RAS @ np.r_[corners[0], 1.0])[:3]}
            view.positions[(90, 80)] = (IJK_TO_RAS @ np.r_[corners[1], 1.0])[:3]
            for kind, button in effect.modeButtons.items():
                button.checked = kind == "box"
            before = bridge.segment_to_array(seg, "Segment_1", volume).astype(bool)
            press = vtk.vtkCommand.LeftButtonPressEvent
            assert effect.processInteractionEvents(Interactor((10, 10)), press, view)  # first corner: no refine
            assert effect._watcher is None and "opposite corner" in effect.statusLabel.text
            assert effect.processInteractionEvents(Interactor((90, 80)), press, view)  # the box: refine
            _finish(effect)
            after = bridge.segment_to_array(seg, "Segment_1", volume).astype(bool)
            assert effect_module.errors == [], effect_module.errors
            assert changed_indices(before, after, axis) <= set(range(index - 15, index + 16))
            assert index in changed_indices(before, after, axis)  # the clicked slice of that view's plane changed
            scripted.editor.Undo()  # Ctrl+Z
            np.testing.assert_array_equal(bridge.segment_to_array(seg, "Segment_1", volume).astype(bool), before)
        assert not effect.processInteractionEvents(Interactor((10, 10)), vtk.vtkCommand.MouseMoveEvent, view)
    finally:
        torch.set_num_threads(threads)
