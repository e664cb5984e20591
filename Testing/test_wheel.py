"""The installable package: a wheel built from the repository, installed into a fresh virtual environment, segments a
real scan with the embedded default model from a folder outside the checkout.

The fresh environment reuses the dependencies already installed (no downloads): a ``.pth`` line appends this
environment's site-packages after the fresh one's, so torch & co. resolve there while the wheel's ``TextSegmentLib``
(in the fresh site-packages, which come first; this environment's editable-install hook is never loaded because
``.pth`` files of an appended folder are not processed) is the one imported.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from TextSegmentLib.resources import EMBEDDED_MODELS_DIR

ROOT = Path(__file__).resolve().parents[1]
CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")  # Colin27 T1 (Debian mricron-data)


def _run(args, cwd: Path, env, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel . --no-deps`` of a copy of the checkout's package files (the build writes build/ and egg-info
    beside its sources; a copy keeps the checkout clean), no build isolation: the installed setuptools, no downloads."""
    out, source = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "TextSegmentLib", source / "TextSegmentLib", ignore=shutil.ignore_patterns("__pycache__"))
    args = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = _run([*args, "-w", str(out)], source, dict(os.environ, PIP_NO_INPUT="1"), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list(out.glob("textsegmentlib-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_catalog_the_terminology_and_exactly_one_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("models.json", "models.schema.json", "terminology.json"):
        assert f"TextSegmentLib/resources/{data}" in names
    bundles = {n.split("/")[3] for n in names if n.startswith("TextSegmentLib/resources/models/")}
    assert bundles == {p.name for p in EMBEDDED_MODELS_DIR.iterdir() if p.is_dir()} and len(bundles) == 1
    (bundle,) = bundles
    for part in ("model.json", "model.safetensors"):
        assert f"TextSegmentLib/resources/models/{bundle}/{part}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith(("Testing/", "training/", "TextSegment/")) for n in names)


def test_a_fresh_environment_segments_from_outside_the_checkout(wheel, tmp_path):
    started = time.monotonic()
    fresh = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], tmp_path, dict(os.environ))
    assert made.returncode == 0, made.stderr
    python = fresh / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, None)
    purelib = Path(site.stdout.strip())
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(purelib)]
    installed = _run([*install, str(wheel)], tmp_path, dict(os.environ, PIP_NO_INPUT="1"))
    assert installed.returncode == 0, installed.stderr[-3000:]
    dependencies = sysconfig.get_paths()["purelib"]  # this environment's site-packages, after the fresh one's
    (purelib / "textsegment_test_dependencies.pth").write_text(dependencies + "\n")

    work = tmp_path / "elsewhere"  # a folder outside the checkout, as a user's
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TEXTSEGMENT_"))}
    env.update(TEXTSEGMENT_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    where = _run([str(python), "-c", "import TextSegmentLib; print(TextSegmentLib.__file__)"], work, env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(fresh.resolve()), where.stdout

    listed = _run([str(python), "-m", "TextSegmentLib", "models", "list"], work, env)
    assert listed.returncode == 0 and "embedded" in listed.stdout, listed.stdout + listed.stderr

    head = sitk.ReadImage(str(CH2))  # a real T1 at 3 mm: small, the whole head
    small = sitk.Resample(head, [s // 3 for s in head.GetSize()], sitk.Transform(), sitk.sitkLinear, head.GetOrigin(),
                          [3.0] * 3, head.GetDirection(), 0.0, sitk.sitkInt16)  # fmt: skip
    sitk.WriteImage(small, str(work / "t1.nii.gz"))
    args = ["segment", "t1.nii.gz", "--prompt", "brain", "--prompt", "liver", "--output", "seg.nii.gz"]
    done = _run([str(python), "-m", "TextSegmentLib", *args, "--device", "cpu", "--views", "axial"], work, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads((work / "seg.nii.gz.json").read_text())
    found = {s["prompt"]: s["found"] for s in report["segments"]}
    assert found == {"brain": True, "liver": False}  # the default model: a brain on a head MRI, no liver
    assert report["model"]["name"] == "textsegment-brain-lite"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "seg.nii.gz")))
    assert labels.shape == sitk.GetArrayFromImage(small).shape and np.count_nonzero(labels == 1) > 1000
    print(f"wheel install and one segmentation: {time.monotonic() - started:.1f} s")


def test_the_slicer_extension_ships_the_same_package_data():
    import re

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    patterns = re.search(r'"TextSegmentLib\.resources" = \[([^\]]*)\]', pyproject).group(1)
    wheel_data = sorted("TextSegmentLib/resources/" + p for p in re.findall(r'"([^"]+)"', patterns))
    cmake = (ROOT / "TextSegment" / "CMakeLists.txt").read_text(encoding="utf-8")
    slicer_data = sorted(re.findall(r'"\$\{_repository_root\}/(TextSegmentLib/resources/[^"]+)"', cmake))
    assert wheel_data == slicer_data and len(wheel_data) >= 3
    shipped = {p.relative_to(ROOT).as_posix() for g in wheel_data for p in ROOT.glob(g)}
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "TextSegmentLib" / "resources").rglob("*")
               if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts}  # fmt: skip
    assert shipped == on_disk  # every data file is shipped by both, nothing left behind
