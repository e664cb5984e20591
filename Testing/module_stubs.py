"""Stand-ins for what only the Slicer application has (Qt, its widgets, the scripted-module base classes).

Everything else the module tests use is real: MRML (slicer-core), the logic, the worker, the models. The stand-ins
are thin: a Qt widget here stores what the module sets and returns it, nothing more.
"""

import importlib.util
import sys
import types
import unittest
from pathlib import Path
from unittest import mock

MODULE_DIR = Path(__file__).resolve().parents[1] / "TextSegment"
UI_NAMES = [
    "promptEdit", "promptLineEdit", "recentPromptsComboBox", "progressBar", "statusLabel", "resultsTable",
    "refineSegmentComboBox", "segmentButton", "cancelButton", "applyRefineButton", "undoButton", "boxButton",
    "positivePointButton", "negativePointButton", "clearPromptsButton", "deviceComboBox", "deviceHintLabel",
    "downloadButton", "importButton", "checkUpdatesButton", "inputVolumeSelector", "outputSegmentationSelector",
]  # fmt: skip


class _Base:
    def __init__(self, *args, **kwargs):
        pass


class FakeTable(mock.MagicMock):
    """QTableWidget: remembers its row count."""

    def setRowCount(self, rows):
        self.rowCount = rows


class FakeCombo:
    """QComboBox with item data."""

    def __init__(self):
        self.items, self.currentIndex = [], -1

    def clear(self):
        self.items, self.currentIndex = [], -1

    def blockSignals(self, block):
        return False

    def itemData(self, index):
        return self.items[index][1] if 0 <= index < len(self.items) else None

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.currentIndex = 0

    def findData(self, data):
        return next((n for n, (_, d) in enumerate(self.items) if d == data), -1)

    def setCurrentIndex(self, index):
        self.currentIndex = index

    @property
    def count(self):
        return len(self.items)

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None


class FakeTextEdit(mock.MagicMock):
    """QPlainTextEdit: holds its text."""

    def setPlainText(self, text):
        self.text_ = text

    def toPlainText(self):
        return getattr(self, "text_", "")


def stub_modules(displayed):
    """``sys.modules`` entries for qt and Slicer's scripted-module classes; ``delayDisplay`` texts go to
    ``displayed``."""
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (_Base,), {}))

    class ScriptedLoadableModuleLogic(_Base):
        def getParameterNode(self):
            return mock.MagicMock()

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, *args):
            displayed.append(message)

    scripted.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    scripted.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice = wrapper.WithinRange = lambda *args: None
    return {"qt": mock.MagicMock(), "slicer.ScriptedLoadableModule": scripted, "slicer.parameterNodeWrapper": wrapper}


def load_module(monkeypatch, displayed):
    """Import TextSegment/TextSegment.py as Slicer does (its folder on sys.path), with the stand-ins above."""
    for name, stub in stub_modules(displayed).items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    spec = importlib.util.spec_from_file_location("TextSegment", MODULE_DIR / "TextSegment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def forget_widget_parts():
    for name in [n for n in sys.modules if n.startswith("TextSegmentWidgets")]:
        del sys.modules[name]


def make_widget(module, logic, parameters, prompts=""):
    """A TextSegmentWidget with stand-in Qt widgets, the given logic and parameter node (a SimpleNamespace)."""
    widget = module.TextSegmentWidget()
    widget.ui = types.SimpleNamespace(**{n: mock.MagicMock() for n in UI_NAMES})
    widget.ui.promptEdit = FakeTextEdit()
    widget.ui.promptEdit.setPlainText(prompts)
    widget.ui.resultsTable = FakeTable()
    widget.ui.refineSegmentComboBox = FakeCombo()
    widget.ui.modelComboBox = FakeCombo()
    widget.ui.deviceComboBox.currentText = "cpu"
    widget.logic = logic
    widget._timer = mock.MagicMock()
    widget._parameterNode = parameters
    widget.makePanels()
    return widget


def parameters(**values):
    """The parameter node's fields with the module's defaults."""
    fields = dict(
        inputVolume=None, outputSegmentation=None, prompts="", recentPrompts="", model="default", device="cpu",
        sliceAxis="auto", ctWindow="auto", presenceThreshold=0.5, minComponentMl=0.05, minComponentPercent=10.0,
        fillHoles=True, largestOnly=False,
    )  # fmt: skip
    fields.update(values)
    return types.SimpleNamespace(**fields)


class FakeParameterNode:
    """The parameterNodeWrapper object: the fields, connectGui/disconnectGui and vtk observers (nothing is wired)."""

    def __init__(self, **values):
        self.__dict__.update(vars(parameters(**values)))
        self.connected = 0

    def connectGui(self, ui):
        self.connected += 1
        return "gui-tag"

    def disconnectGui(self, tag):
        self.connected -= 1

    def AddObserver(self, event, method, priority=0.0):
        return 1

    def RemoveObserver(self, tag):
        pass


def blocked_imports_finder(blocked, violations):
    """A meta-path finder that makes the modules ``blocked`` unimportable on the main thread (and records each
    attempt in ``violations``); other threads import them normally. ``importlib.util.find_spec`` still finds them."""
    import importlib.abc
    import importlib.machinery
    import threading
    import traceback

    class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in blocked or threading.current_thread() is not threading.main_thread():
                return None
            callers = [frame.filename.replace("\\", "/") for frame in traceback.extract_stack(limit=6)]
            if any(n.endswith("importlib/util.py") or n == "<frozen importlib.util>" for n in callers):
                return None  # importlib.util.find_spec asks whether it is installed: it is
            violations.append("".join(traceback.format_stack(limit=12)))
            return importlib.machinery.ModuleSpec(name, self)

        def create_module(self, spec):
            raise ImportError(f"{spec.name} may not be imported on the main thread")

        def exec_module(self, module):
            raise ImportError(f"{module.__name__} may not be imported on the main thread")

    return Blocker()
