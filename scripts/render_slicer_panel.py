"""Render the module panel (TextSegment/Resources/UI/TextSegment.ui) to docs/slicer-module.png without Slicer.

Slicer's own widgets (ctkCollapsibleButton, qMRMLNodeComboBox, ctkSliderWidget, qMRMLWidget) are drawn as their
plain Qt look-alikes (group box, combo box, spin box, widget). The results table is filled from a JSON file written
by a real run (``--results``; see docs/slicer.md), so the numbers in the picture are real.

Needs PyQt5, which is not a dependency of this project: use a separate environment, e.g.

    python -m venv /tmp/qt && /tmp/qt/bin/pip install PyQt5
    QT_QPA_PLATFORM=offscreen /tmp/qt/bin/python scripts/render_slicer_panel.py --results results.json
"""

import argparse
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI = ROOT / "TextSegment" / "Resources" / "UI" / "TextSegment.ui"
#: Slicer widget -> (Qt look-alike, properties it keeps)
STAND_INS = {
    "ctkCollapsibleButton": ("QGroupBox", {"toolTip"}),
    "qMRMLNodeComboBox": ("QComboBox", {"toolTip"}),
    "ctkSliderWidget": ("QDoubleSpinBox", {"toolTip", "singleStep", "maximum", "minimum", "value", "decimals"}),
    "qMRMLWidget": ("QWidget", set()),
}


def plain_qt_ui(path: Path) -> str:
    """The .ui with Slicer's widgets replaced by Qt look-alikes (collapsible button text becomes the group title)."""
    root = ET.parse(path).getroot()
    for widget in root.iter("widget"):
        stand_in = STAND_INS.get(widget.get("class"))
        if stand_in is None:
            continue
        cls, keep = stand_in
        for prop in list(widget.findall("property")):
            name = prop.get("name")
            if cls == "QGroupBox" and name == "text":
                prop.set("name", "title")
            elif name not in keep:
                widget.remove(prop)
        widget.set("class", cls)
    custom = root.find("customwidgets")
    if custom is not None:
        root.remove(custom)
    for connections in root.findall("connections"):
        root.remove(connections)
    return ET.tostring(root, encoding="unicode")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="JSON: volume, prompts, rows of [prompt, found, confidence, volume_ml]")
    parser.add_argument("--output", default=str(ROOT / "docs" / "slicer-module.png"))
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt5 import QtWidgets, uic

    app = QtWidgets.QApplication(sys.argv[:1])
    app.setStyle("Fusion")
    with tempfile.NamedTemporaryFile("w", suffix=".ui", delete=False, encoding="utf-8") as fh:
        fh.write(plain_qt_ui(UI))
    panel = uic.loadUi(fh.name)
    os.unlink(fh.name)
    run = json.loads(Path(args.results).read_text(encoding="utf-8")) if args.results else {}
    panel.inputVolumeSelector.addItem(run.get("volume", "MRHead"))
    panel.outputSegmentationSelector.addItem(f"{run.get('volume', 'MRHead')} TextSegment")
    panel.promptEdit.setPlainText("\n".join(run.get("prompts", [])))
    rows = run.get("rows", [])
    panel.resultsTable.setRowCount(len(rows))
    for r, (prompt, found, confidence, volume_ml) in enumerate(rows):
        cells = (prompt, "found" if found else "not found", f"{100 * confidence:.0f} %", f"{volume_ml:.1f}")
        for c, text in enumerate(cells):
            panel.resultsTable.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        panel.refineSegmentComboBox.addItem(prompt)
    panel.resultsTable.resizeColumnsToContents()
    panel.statusLabel.setText(run.get("status", ""))
    panel.progressBar.setVisible(False)
    for button in (panel.segmentButton, panel.applyRefineButton, panel.undoButton):
        button.setEnabled(bool(rows))  # the state after a run
    panel.modelComboBox.addItem("textsegment-brain-lite-v0.12.0 (default) - installed")
    for name in ("auto", "cuda", "mps", "cpu"):
        panel.deviceComboBox.addItem(name)
    panel.resize(430, panel.sizeHint().height())
    panel.show()
    app.processEvents()
    if not panel.grab().save(args.output):
        raise SystemExit(f"could not write {args.output}")
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
