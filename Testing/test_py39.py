"""Library and module code must run on Python 3.9 (Slicer 5.6/5.8) and pass the linter."""

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [str(p) for p in (ROOT / "TextSegmentLib", ROOT / "TextSegment") if p.exists()]
BIN = Path(sys.executable).parent


def _python39():
    found = shutil.which("python3.9")
    candidates = [found] if found else []
    candidates += sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.9*/bin/python3.9")))
    for candidate in candidates:
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


def test_vermin_finds_nothing_newer_than_39():
    cmd = [str(BIN / "vermin"), "-t=3.9-", "--no-tips", "--violations", "--eval-annotations", "-q", *TARGETS]
    out = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 interpreter here; the vermin check above still runs")
def test_compiles_with_python39(tmp_path):
    code = "import compileall, sys; sys.exit(not all(compileall.compile_dir(d, quiet=1) for d in sys.argv[1:]))"
    out = subprocess.run(
        [_python39(), "-c", code, *TARGETS],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env={"PYTHONPYCACHEPREFIX": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_lint_is_clean():
    out = subprocess.run(
        [str(BIN / "ruff"), "check", str(ROOT)], capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
