"""The module's widget glue (TextSegment/TextSegment.py) driven without the Slicer application.

Real MRML (slicer-core) and the real logic, worker and tiny model; only Qt, the widgets and Slicer's scripted-module
base classes are stand-ins. This exercises what the self-test does inside Slicer: Segment -> poll the worker ->
segments and results; box -> Apply -> Undo; an error shows a dialog and leaves the scene; Cancel.
"""

import time
from unittest import mock

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("torch")

from module_stubs import forget_widget_parts, load_module, make_widget, parameters  # noqa: E402

from TextSegmentLib.slicer import bridge  # noqa: E402
from TextSegmentLib.slicer.worker import Worker  # noqa: E402


@pytest.fixture
def module(monkeypatch):
    yield load_module(monkeypatch, [])
    forget_widget_parts()


@pytest.fixture
def scene(monkeypatch):
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    app = mock.MagicMock()
    app.testingEnabled.return_value = True
    monkeypatch.setattr(slicer, "app", app, raising=False)
    return scene


@pytest.fixture
def worker():
    w = Worker(name="test-module-worker")
    yield w
    w.shutdown()


def _widget(module, scene, volume, tiny_bundle, worker, prompts="brain\nleft hippocampus"):
    logic = module.TextSegmentLogic(scene, model=str(tiny_bundle), device="cpu", worker=worker)
    values = dict(inputVolume=volume, prompts=prompts, model=str(tiny_bundle), presenceThreshold=0.0)
    values.update(minComponentMl=0.0, minComponentPercent=0.0, fillHoles=False)  # keep everything the model finds
    return make_widget(module, logic, parameters(**values), prompts)


def _run(widget, timeout=60.0):
    deadline = time.monotonic() + timeout
    while widget._job is not None and time.monotonic() < deadline:
        widget._tick()
    assert widget._job is None, "the job did not finish"


def _volume(scene, shape=(12, 40, 36)):
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    array = (100.0 * ((x - 18) ** 2 / 200 + (y - 20) ** 2 / 250 + (z - 6) ** 2 / 30 < 1) + x).astype(np.float32)
    return bridge.array_to_volume(scene, array, np.diag([-2.0, -2.0, 3.0, 1.0]), name="head")


def test_segment_refine_undo_through_the_widget(module, scene, tiny_bundle, worker, monkeypatch):
    volume = _volume(scene)
    widget = _widget(module, scene, volume, tiny_bundle, worker)
    monkeypatch.setattr(module, "ensureDependencies", lambda askConfirmation=True: True)
    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: shown.append(text))
    widget.onSegment()
    assert widget._job is not None
    _run(widget)
    seg = widget._parameterNode.outputSegmentation
    assert seg is not None and seg.GetSegmentation().GetNumberOfSegments() == 2
    assert widget.ui.resultsTable.rowCount == 2
    assert widget.ui.refineSegmentComboBox.count == 2
    assert widget._parameterNode.recentPrompts == "brain\tleft hippocampus"

    sid = seg.GetSegmentation().GetSegmentIdBySegmentName("brain")
    widget._selectResultRow(0, 0)
    assert widget.ui.refineSegmentComboBox.currentData == sid
    before = bridge.segment_to_array(seg, sid, volume)
    box = widget.tools.markupsNode("box")
    _, m = bridge.volume_to_array(volume, copy=False)
    lo, hi = (m @ [5.0, 5.0, 6.0, 1.0])[:3], (m @ [30.0, 34.0, 6.0, 1.0])[:3]
    box.SetCenter(*((lo + hi) / 2))
    box.SetSize(*np.abs(hi - lo))
    widget.onApplyRefine()
    _run(widget)
    assert box.GetNumberOfControlPoints() == 0, "the box is cleared once applied"
    assert widget.logic.canUndo(seg)
    widget.onUndo()
    np.testing.assert_array_equal(bridge.segment_to_array(seg, sid, volume), before)
    assert shown == [], shown


def test_island_percentage_reaches_the_engine_as_a_fraction(module, scene, tiny_bundle, worker):
    widget = _widget(module, scene, _volume(scene), tiny_bundle, worker)
    widget._parameterNode.minComponentPercent = 25.0
    options = widget._options()
    assert options["min_component_fraction"] == 0.25 and options["min_component_ml"] == 0.0
    widget.logic.segmenter()._options(options)  # the engine accepts what the widget sends


def test_largest_part_only_unchecked_leaves_the_choice_to_the_model_card(module, scene, tiny_bundle, worker):
    widget = _widget(module, scene, _volume(scene), tiny_bundle, worker)
    assert widget._options()["largest_only"] is None  # the card's per-structure choice
    widget._parameterNode.largestOnly = True
    options = widget._options()
    assert options["largest_only"] is True
    assert widget.logic.segmenter()._options(options)["largest_only"] is True


def test_error_shows_a_dialog_and_leaves_the_scene(module, scene, tiny_bundle, worker, monkeypatch):
    volume = _volume(scene)
    widget = _widget(module, scene, volume, tiny_bundle, worker, prompts="brain")
    widget._parameterNode.ctWindow = "no-such-window"
    shown = []
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: shown.append((text, kw)))
    monkeypatch.setattr(module, "ensureDependencies", lambda askConfirmation=True: True)
    widget.onSegment()
    _run(widget)
    assert shown and "no-such-window" in shown[0][0] and "Traceback" in shown[0][1]["detailedText"]
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    assert widget._parameterNode.outputSegmentation is None


def test_cancel_from_the_widget(module, scene, tiny_bundle, worker, monkeypatch):
    volume = _volume(scene, shape=(300, 32, 32))
    widget = _widget(module, scene, volume, tiny_bundle, worker, prompts="brain")
    monkeypatch.setattr(module, "ensureDependencies", lambda askConfirmation=True: True)
    widget.onSegment()
    job = widget._job
    while job.status().fraction < 0.02 and not job.done:
        time.sleep(0.01)
    widget.onCancel()
    _run(widget)
    assert job.state == "cancelled"
    assert "cancelled" in str(widget.ui.statusLabel.text)
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
