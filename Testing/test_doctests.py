"""The examples in TextSegmentLib's docstrings run, module by module (examples marked ``+SKIP`` need files, a
network or a Slicer scene and are only read)."""

import doctest
import importlib
import io
import pkgutil

import pytest

import TextSegmentLib

MODULES = sorted(m.name for m in pkgutil.walk_packages(TextSegmentLib.__path__, "TextSegmentLib."))
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _tests(name: str):
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


def test_the_library_has_examples_to_run():
    examples = [e for name in ["TextSegmentLib"] + MODULES for t in _tests(name) for e in t.examples]
    assert len(examples) >= 60
    assert len(MODULES) >= 60 and "TextSegmentLib.engine.dicomseg" in MODULES


@pytest.mark.parametrize("name", ["TextSegmentLib"] + MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a relative path writes here
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _tests(name):
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()
