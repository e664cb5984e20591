"""Static checks of the Slicer module (the GUI itself needs the Slicer application and is tested by its self-test).

Every widget the module uses exists in the .ui file with the expected class; the .ui is valid Qt Designer XML; every
parameter-node binding names a field of the parameter node; the module and its helpers parse as Python 3.9; the
CMake files list what is on disk.
"""

import ast
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "TextSegment"
UI = MODULE / "Resources" / "UI" / "TextSegment.ui"
SOURCES = [MODULE / "TextSegment.py", *sorted((MODULE / "TextSegmentWidgets").glob("*.py"))]

EXPECTED_CLASSES = {
    "inputVolumeSelector": "qMRMLNodeComboBox",
    "outputSegmentationSelector": "qMRMLNodeComboBox",
    "promptEdit": "QPlainTextEdit",
    "promptLineEdit": "QLineEdit",
    "recentPromptsComboBox": "QComboBox",
    "segmentButton": "QPushButton",
    "cancelButton": "QPushButton",
    "progressBar": "QProgressBar",
    "statusLabel": "QLabel",
    "resultsTable": "QTableWidget",
    "refineSegmentComboBox": "QComboBox",
    "boxButton": "QPushButton",
    "positivePointButton": "QPushButton",
    "negativePointButton": "QPushButton",
    "applyRefineButton": "QPushButton",
    "undoButton": "QPushButton",
    "modelComboBox": "QComboBox",
    "downloadButton": "QPushButton",
    "importButton": "QPushButton",
    "checkUpdatesButton": "QPushButton",
    "deviceComboBox": "QComboBox",
    "deviceHintLabel": "QLabel",
    "sliceAxisComboBox": "QComboBox",
    "ctWindowComboBox": "QComboBox",
    "presenceThresholdSlider": "ctkSliderWidget",
    "minComponentSpinBox": "QDoubleSpinBox",
    "minComponentPercentSpinBox": "QDoubleSpinBox",
    "fillHolesCheckBox": "QCheckBox",
    "largestOnlyCheckBox": "QCheckBox",
}


@pytest.fixture(scope="module")
def ui():
    return ET.parse(UI).getroot()  # raises on invalid XML


def _widgets(root):
    return {w.get("name"): w for w in root.iter("widget")}


def _used_names():
    names = set()
    for path in SOURCES:
        names |= set(re.findall(r"self\.ui\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")))
    return names


def test_ui_is_designer_xml_with_expected_classes(ui):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    assert ui.findtext("class") == "TextSegment"
    top = ui.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == "TextSegment"
    widgets = _widgets(ui)
    for name, cls in EXPECTED_CLASSES.items():
        assert name in widgets, f"{name} missing from the .ui"
        assert widgets[name].get("class") == cls, f"{name} is {widgets[name].get('class')}, expected {cls}"
    names = [w.get("name") for w in ui.iter("widget")] + [lay.get("name") for lay in ui.iter("layout")]
    assert len(names) == len(set(names)), "object names in the .ui must be unique"
    declared = {c.findtext("class") for c in ui.iter("customwidget")}
    used = {w.get("class") for w in ui.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared


def test_every_widget_used_by_the_module_exists(ui):
    widgets = _widgets(ui)
    used = _used_names()
    assert used, "the module should use self.ui.<name>"
    assert sorted(used - set(widgets)) == []


def test_node_selectors_and_table(ui):
    widgets = _widgets(ui)

    def node_types(name):
        prop = next(p for p in widgets[name].iter("property") if p.get("name") == "nodeTypes")
        return [s.text for s in prop.iter("string")]

    assert node_types("inputVolumeSelector") == ["vtkMRMLScalarVolumeNode"]
    assert node_types("outputSegmentationSelector") == ["vtkMRMLSegmentationNode"]
    columns = [c.findtext("property/string") for c in widgets["resultsTable"].findall("column")]
    assert columns == ["Segment", "Found", "Confidence", "Volume (mL)"]
    connected = {
        c.findtext("receiver") for c in ui.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert {"inputVolumeSelector", "outputSegmentationSelector"} <= connected


def test_parameter_bindings_name_parameter_node_fields(ui):
    tree = ast.parse((MODULE / "TextSegment.py").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TextSegmentParameterNode")
    fields = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    bound = [
        p.findtext("string")
        for p in ui.iter("property")
        if p.get("name") == "SlicerParameterName" and p.get("stdset") == "0"
    ]
    assert bound and sorted(set(bound) - fields) == []
    assert {"inputVolume", "outputSegmentation", "device", "sliceAxis", "ctWindow"} <= set(bound)


def test_module_structure_and_python39_syntax():
    for path in SOURCES:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
    tree = ast.parse((MODULE / "TextSegment.py").read_text(encoding="utf-8"))
    classes = {n.name: [ast.unparse(b) for b in n.bases] for n in tree.body if isinstance(n, ast.ClassDef)}
    assert "ScriptedLoadableModule" in classes["TextSegment"]
    assert "ScriptedLoadableModuleWidget" in classes["TextSegmentWidget"]
    assert "ScriptedLoadableModuleTest" in classes["TextSegmentTest"]
    assert "_LibraryLogic" in classes["TextSegmentLogic"]
    python39 = shutil.which("python3.9")
    if python39 and subprocess.run([python39, "-c", "pass"], capture_output=True).returncode == 0:
        code = "import sys; [compile(open(p).read(), p, 'exec') for p in sys.argv[1:]]"
        out = subprocess.run(
            [python39, "-c", code, *map(str, SOURCES)], capture_output=True, encoding="utf-8", errors="replace"
        )
        assert out.returncode == 0, out.stderr


def test_library_does_not_import_slicer_or_qt_at_import_time():
    for name in ("slicer_bridge", "slicer_markups", "slicer_logic", "worker", "prompts", "progress", "requirements"):
        path = ROOT / "TextSegmentLib" / f"{name}.py"
        for source in [path] if path.is_file() else sorted((ROOT / "TextSegmentLib" / name).glob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"))
            top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            modules = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
            modules |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
            assert not modules & {"slicer", "vtk", "qt", "ctk", "torch"}, source.name


def test_cmake_lists_what_is_on_disk():
    module_cmake = (MODULE / "CMakeLists.txt").read_text(encoding="utf-8")
    for path in SOURCES:
        assert path.relative_to(MODULE).as_posix().replace("TextSegment.py", "${MODULE_NAME}.py") in module_cmake
    for resource in ("Resources/Icons/${MODULE_NAME}.png", "Resources/UI/${MODULE_NAME}.ui"):
        assert resource in module_cmake
        assert (MODULE / resource.replace("${MODULE_NAME}", "TextSegment")).is_file()
    assert "slicerMacroBuildScriptedModule" in module_cmake and "TextSegmentLib/*.py" in module_cmake
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for needle in ('EXTENSION_CATEGORY "Segmentation"', 'EXTENSION_DEPENDS "PyTorch"', "find_package(Slicer",
                   "add_subdirectory(TextSegment)", "Slicer_EXTENSION_CPACK"):  # fmt: skip
        assert needle in top
    assert "slicer_add_python_unittest" in (MODULE / "Testing" / "Python" / "CMakeLists.txt").read_text()
    png = (MODULE / "Resources" / "Icons" / "TextSegment.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == int.from_bytes(png[20:24], "big") == 128


def test_screenshot_and_pictures_exist():
    """The extension's screenshot URL and every picture README and docs/ show point at files of this repository."""
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    urls = re.search(r'EXTENSION_SCREENSHOTURLS "([^"]+)"', top).group(1).split()
    assert urls
    for url in urls:
        path = ROOT / url.split("/main/", 1)[1]
        assert path.is_file(), url
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" not in link:
                assert (page.parent / link).is_file(), f"{page.name}: {link}"


def test_help_and_description_use_prompts_the_default_model_finds():
    card = next((ROOT / "Resources" / "models").glob("*/model.json"))  # the embedded default model
    vocabulary = json.loads(card.read_text(encoding="utf-8"))["vocabulary"]
    names = {v["name"] for v in vocabulary} | {s for v in vocabulary for s in v.get("synonyms", [])}
    module = (MODULE / "TextSegment.py").read_text(encoding="utf-8")
    help_text = module[module.index("helpText") : module.index("acknowledgementText")]
    description = re.search(r'EXTENSION_DESCRIPTION "(.+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    for text in (help_text, description):
        examples = re.findall(r"<i>([^<]+)</i>", text) or re.findall(r'\\"([^"\\]+)\\"', text)
        assert len(examples) >= 3, text
        for example in examples:
            assert example in names, f"{example!r} is not something the default model knows"
        assert "liver" not in text and "kidney" not in text


def test_combo_boxes_offer_the_parameter_node_choices(ui):
    """A parameter bound to a combo box must find each of its choices there (parameterNodeWrapper matches text)."""
    source = (MODULE / "TextSegment.py").read_text(encoding="utf-8")
    widgets = _widgets(ui)
    bound = {}
    for widget in widgets.values():
        for prop in widget.iter("property"):
            if prop.get("name") == "SlicerParameterName" and widget.get("class") == "QComboBox":
                bound[prop.findtext("string")] = widget
    checked = 0
    for name, choices in re.findall(r"(\w+): Annotated\[str, Choice\((\[[^\]]*\])\)\]", source):
        if name in bound:
            items = [item.findtext("property/string") for item in bound[name].findall("item")]
            assert items == ast.literal_eval(choices), name
            checked += 1
    assert checked >= 2
