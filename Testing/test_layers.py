"""The house has no upward imports: each layer of TextSegmentLib imports only from the layers below it (DESIGN.md).

Every import is checked, also those inside functions (a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "TextSegmentLib"
#: what each part may not import (its own layer and those below are fine)
FORBIDDEN = {
    "base": {"engine", "catalog", "app", "cli", "slicer", "demo"},
    "engine": {"catalog", "app", "cli", "slicer", "demo"},
    "catalog": {"engine", "app", "cli", "slicer", "demo"},
    "app": {"cli", "slicer", "demo"},
}
BASE = ("atomic", "filelock", "progress", "prompts", "vocabulary", "device", "checkpoint", "imaging", "model")


def _layer(path: Path) -> str:
    top = path.relative_to(LIB).parts[0].replace(".py", "")
    return "base" if top in BASE else top


def _imported(path: Path):
    """Top-level TextSegmentLib modules imported anywhere in ``path`` (absolute or relative imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(LIB).parent.parts
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)]) if node.level > 1 else list(package)
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.startswith("TextSegmentLib."):
                names = [node.module.split(".")[1]]
            else:
                continue
            yield from names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("TextSegmentLib."):
                    yield alias.name.split(".")[1]


SOURCES = sorted(p for p in LIB.rglob("*.py") if _layer(p) in FORBIDDEN)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(LIB)) for p in SOURCES])
def test_no_upward_imports(path):
    upward = sorted(set(_imported(path)) & FORBIDDEN[_layer(path)])
    assert upward == [], f"{path.relative_to(LIB)} ({_layer(path)}) imports {upward}"


def test_the_check_sees_lazy_and_relative_imports():
    imported = set(_imported(LIB / "engine" / "result.py"))  # imports .writers lazily, ..prompts at the top
    assert {"engine", "prompts"} <= imported
    assert "catalog" in set(_imported(LIB / "app" / "models.py"))
