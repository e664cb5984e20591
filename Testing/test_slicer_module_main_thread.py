"""Opening the module and segmenting never import torch, SimpleITK or scipy on the main thread (they would freeze
Slicer for seconds before anything is shown): only the worker imports them.

A subprocess (the test process already has torch) makes the three unimportable on its main thread with a meta-path
blocker, loads TextSegment/TextSegment.py with the thin Qt stand-ins (Testing/module_stubs.py), opens the module as
Slicer does (setup's tail, enter), lets the background preparation run, then segments: real MRML, the real logic and
worker, a tiny model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("slicer")
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, time
from unittest import mock
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from module_stubs import FakeParameterNode, blocked_imports_finder, make_widget, stub_modules
violations = []
sys.meta_path.insert(0, blocked_imports_finder({"torch", "SimpleITK", "scipy"}, violations))
sys.modules.update(stub_modules([]))
sys.path.insert(0, sys.argv[4])
import importlib.util
spec = importlib.util.spec_from_file_location("TextSegment", sys.argv[4] + "/TextSegment.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import slicer
from TextSegmentWidgets.self_test import headVolume
from TextSegmentLib.slicer.worker import Worker
scene = slicer.vtkMRMLScene()
slicer.mrmlScene, slicer.app = scene, mock.MagicMock()
errors = []
slicer.util.errorDisplay = lambda text, **kw: errors.append(text)
volume = headVolume(scene, shape=(10, 14, 12))
bundle = sys.argv[1]
worker = Worker(name="main-thread-test-worker")
logic = module.TextSegmentLogic(scene, model=bundle, device="cpu", worker=worker)
node = FakeParameterNode(inputVolume=volume, model=bundle, prompts="brain", presenceThreshold=0.0, minComponentMl=0.0)
widget = make_widget(module, logic, node, "brain")
widget._parameterNode = None
logic.getParameterNode = lambda: node
# what setup() does after building the UI, then enter()
widget.tools.observeInteraction()
widget.initializeParameterNode()
widget.models.populate()
widget.prompts.setCompletions(["brain"] + widget.models.vocabulary(node.model))
widget.models.updateDeviceHint()
widget.enter()
opened = {"violations": len(violations), "preparing": widget.background.job is not None}
deadline = time.monotonic() + 240
while widget.background.watcher is not None and time.monotonic() < deadline:
    widget._tick()
prepared = widget.background.preparedFor is not None and widget.background.watcher is None
widget.onSegment()
while widget._job is not None and time.monotonic() < deadline:
    widget._tick()
seg = node.outputSegmentation
widget.models.updateDeviceHint()
worker.shutdown()
print(json.dumps({"opened": opened, "prepared": prepared, "errors": errors, "violations": violations,
                  "segments": seg.GetSegmentation().GetNumberOfSegments() if seg else 0,
                  "torch_after": "torch" in sys.modules, "connected": node.connected}))
"""


def test_opening_the_module_and_segmenting_import_torch_only_on_the_worker(tiny_bundle):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle), str(ROOT), str(ROOT / "Testing"), str(ROOT / "TextSegment")],
        capture_output=True, text=True, timeout=300, cwd=str(ROOT), env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["violations"] == [], report["violations"][0]
    assert report["opened"] == {"violations": 0, "preparing": True}  # opened: the worker prepares meanwhile
    assert report["prepared"] and report["errors"] == []
    assert report["segments"] == 1 and report["torch_after"]  # the worker imported torch and segmented
    assert report["connected"] == 1


def test_the_blocker_blocks(tmp_path):
    """The check itself: importing torch on the main thread under the blocker fails, on another thread it works."""
    code = (
        "import sys, threading; sys.path.insert(0, sys.argv[1]); from module_stubs import blocked_imports_finder\n"
        "v = []; sys.meta_path.insert(0, blocked_imports_finder({'scipy'}, v))\n"
        "import importlib.util; assert importlib.util.find_spec('scipy') is not None\n"
        "try:\n    import scipy\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('not blocked')\n"
        "t = threading.Thread(target=lambda: __import__('scipy')); t.start(); t.join()\n"
        "assert 'scipy' in sys.modules and len(v) == 1; print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "Testing")], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
