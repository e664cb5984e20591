"""Nothing a planted file, a link or a hand-edited setting can do loses data or runs code (issue 30, part 1).

Every name the program writes next to an output (the output, its report ``<output>.json``, its lock
``<output>.lock``, the temporary files) is tried with a symbolic link planted there and with a file of the user's
own; the Python API may not write onto its input; ``models remove`` removes only what the catalog installed; a model
card cannot make the program import a module. Real files, the tiny real model, the CLI in this process.
"""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest_http import home, write_catalog  # noqa: F401
from fuzz_helpers import SUBPROCESS_ENV, digest, one_torch_thread, seg, small_volume, snapshot, temporary_files

from TextSegmentLib.filelock import Busy, ExclusiveFile, NotALock

ALL = {"presence_threshold": 0.0, "mask_threshold": 0.0, "min_component_ml": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def scan(tmp_path) -> Path:
    return small_volume(tmp_path / "in.nii.gz")


# --- the lock ---------------------------------------------------------------------------------------------------
def test_a_link_or_a_users_file_at_the_lock_name_is_never_written_or_removed(tmp_path):
    target = tmp_path / "labels.nii.gz"
    lock = Path(str(target) + ".lock")
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's notes\n")
    os.symlink(victim, lock)
    with pytest.raises(NotALock, match="symbolic link"):
        ExclusiveFile(target).acquire()
    assert victim.read_text() == "the user's notes\n" and os.path.islink(lock)
    lock.unlink()
    lock.write_text("my own file that happens to have this name\n")
    with pytest.raises(NotALock, match="not a TextSegment lock file"):
        ExclusiveFile(target).acquire()
    assert lock.read_text() == "my own file that happens to have this name\n"
    lock.unlink()
    lock.mkdir()
    with pytest.raises(NotALock, match="a folder"):
        ExclusiveFile(target).acquire()
    assert lock.is_dir()
    lock.rmdir()
    # the lock this process makes is complete when it appears, held, and removed on release
    with ExclusiveFile(target, "segmenting"):
        assert lock.read_text().startswith("TextSegment lock: segmenting process")
        with pytest.raises(Busy, match="is being written by segmenting process"):
            ExclusiveFile(target).acquire()
    assert not os.path.lexists(lock) and temporary_files(tmp_path) == []


def test_release_never_removes_a_lock_file_it_did_not_make(tmp_path):
    target = tmp_path / "labels.nii.gz"
    lock = Path(str(target) + ".lock")
    held = ExclusiveFile(target)
    held.acquire()
    os.remove(lock)
    lock.write_text("made by someone else after ours went\n")
    held.release()
    assert lock.read_text() == "made by someone else after ours went\n"


HOLD = """
import os, sys, time
from TextSegmentLib.cli.main import stop_cleanly_on_sigterm
from TextSegmentLib.filelock import ExclusiveFile
with stop_cleanly_on_sigterm():
    with ExclusiveFile(sys.argv[1], "segmenting"):
        print("held", flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_stopped_by_a_signal_leaves_no_lock_that_blocks_the_next(tmp_path, sig):
    target = tmp_path / "labels.nii.gz"
    lock = Path(str(target) + ".lock")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, encoding="utf-8", env=SUBPROCESS_ENV
    )
    assert proc.stdout.readline().strip() == "held" and lock.exists()
    proc.send_signal(sig)
    assert proc.wait(30) in (143, -signal.SIGKILL)
    if sig == signal.SIGTERM:  # stopped cleanly: the lock file is gone
        assert not os.path.lexists(lock) and temporary_files(tmp_path) == []
    else:  # killed: the lock file stays, but it is unlocked and the next run takes it over
        assert lock.exists()
    with ExclusiveFile(target):
        pass
    assert not os.path.lexists(lock) and temporary_files(tmp_path) == []


FULL = """
import resource, signal, sys
from TextSegmentLib.filelock import ExclusiveFile
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    ExclusiveFile(sys.argv[1]).acquire()
except OSError as exc:
    print(exc)
"""


def test_a_full_disk_while_locking_names_the_lock_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "labels.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-c", FULL, str(target)], capture_output=True, encoding="utf-8", env=SUBPROCESS_ENV
    )
    assert proc.returncode == 0, proc.stderr
    assert f"cannot create the lock file {target}.lock" in proc.stdout and "disk" in proc.stdout, proc.stdout
    assert list(tmp_path.iterdir()) == []


# --- the writers --------------------------------------------------------------------------------------------------
@pytest.fixture
def result(tiny_bundle, scan):
    from TextSegmentLib.engine import Segmenter

    return Segmenter(str(tiny_bundle), device="cpu").segment(str(scan), ["brain"], **ALL)


def test_the_python_api_never_writes_onto_its_input(result, scan, tmp_path):
    from TextSegmentLib.engine.writers import WriteRefused

    os.link(scan, tmp_path / "hard.nii.gz")
    os.symlink(scan, tmp_path / "soft.nii.gz")
    before = snapshot(tmp_path)
    for target in (scan, str(scan), tmp_path / "hard.nii.gz", tmp_path / "soft.nii.gz", tmp_path / "." / "in.nii.gz"):
        with pytest.raises(WriteRefused, match="is the input of this result"):
            result.save(target, overwrite=True)
    assert snapshot(tmp_path) == before


def test_the_report_never_replaces_a_users_file_without_overwrite(result, tiny_bundle, scan, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    report = Path(str(out) + ".json")
    report.write_text("my own notes, not a report\n")
    with pytest.raises(FileExistsError, match="the report written next to the output"):
        result.save(out)
    assert report.read_text() == "my own notes, not a report\n" and not out.exists()
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
    assert code == 1 and "report written next to the output" in err and "nothing was computed" in err, err
    assert report.read_text() == "my own notes, not a report\n" and not out.exists()
    assert temporary_files(tmp_path) == []
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, "--overwrite")
    assert code == 0 and json.loads(report.read_text())["output"] == str(out), err


NAMES = {"output": "", "report": ".json", "lock": ".lock"}


@pytest.mark.parametrize("what", sorted(NAMES))
@pytest.mark.parametrize("planted", ["symlink", "user file"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_every_written_name_with_a_planted_link_or_a_users_file(tiny_bundle, scan, tmp_path, capsys, what, planted,
                                                                  overwrite):  # fmt: skip
    """Whatever is at a name the program writes, the file a link points to is never changed; a user's file is
    replaced only where the user asked for it (--overwrite of the output or its report); a lock name is never
    touched."""
    out = tmp_path / "out" / "labels.nii.gz"
    out.parent.mkdir()
    name = Path(str(out) + NAMES[what])
    victim = tmp_path / "victim.txt"
    victim.write_text("must never change\n")
    if planted == "symlink":
        os.symlink(victim, name)
    else:
        name.write_text("the user's own file\n")
    before_input = digest(scan)
    args = ["--overwrite"] if overwrite else []
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, *args)
    assert "Traceback" not in err
    assert victim.read_text() == "must never change\n" and digest(scan) == before_input
    if what == "lock" or not overwrite:
        assert code == 1, err
        assert os.path.islink(name) if planted == "symlink" else name.read_text() == "the user's own file\n"
    else:  # the user asked to replace what is there: the link itself is replaced, never what it points to
        assert code == 0, err
        assert not os.path.islink(name) and name.read_bytes() != b"the user's own file\n"
    assert temporary_files(out.parent) == ([str(name)] if what == "lock" else [])


def test_a_planted_link_at_the_temporary_name_is_never_followed(result, tmp_path, monkeypatch):
    from TextSegmentLib import atomic

    out = tmp_path / "labels.nii.gz"
    victim = tmp_path / "victim.txt"
    victim.write_text("must never change\n")
    fixed = uuid.UUID("0123456789abcdef0123456789abcdef")
    for name, suffix in ((out, ".nii.gz"), (Path(str(out) + ".json"), ".json")):
        os.symlink(victim, name.parent / f".{name.name}.{fixed.hex[:12]}.tmp{suffix}")
    calls = []

    def guessed_then_new():  # the first name tried is the planted one
        calls.append(1)
        return fixed if len(calls) <= 2 else uuid.UUID(bytes=os.urandom(16))

    monkeypatch.setattr(atomic.uuid, "uuid4", guessed_then_new)
    result.save(out)
    assert victim.read_text() == "must never change\n" and out.is_file() and len(calls) >= 3


# --- models remove -------------------------------------------------------------------------------------------------
def test_models_remove_removes_only_what_the_catalog_installed(home, capsys):  # noqa: F811
    from TextSegmentLib.cli.main import main

    write_catalog(home.parent / "Resources" / "models.json", [])
    mine = home / "my-notes-v1.0.0"
    mine.mkdir(parents=True)
    (mine / "model.json").write_text("{}")
    (mine / "data.txt").write_text("mine")
    assert main(["models", "remove", "my-notes-v1.0.0"]) == 2
    err = capsys.readouterr().err
    assert "was not installed by TextSegment" in err and "nothing was removed" in err, err
    assert (mine / "data.txt").read_text() == "mine"


# --- model cards are data ------------------------------------------------------------------------------------------
def _card(bundle: Path, **encoder) -> None:
    card = json.loads((bundle / "model.json").read_text())
    card["text_encoder"].update(encoder)
    (bundle / "model.json").write_text(json.dumps(card))


def test_a_model_card_cannot_make_the_program_import_a_module(tiny_bundle, tmp_path):
    import shutil

    from TextSegmentLib.checkpoint import BundleError, check_bundle

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    for package in ("this", "os", "TextSegmentLib.cli.main", ["x"]):
        sys.modules.pop("this", None)
        _card(bundle, package=package)
        with pytest.raises(BundleError, match="not one TextSegment knows|nothing was imported"):
            check_bundle(bundle)
        assert "this" not in sys.modules  # `this` prints the Zen of Python when it is imported


CARD_IMPORT = """
import json, sys
from TextSegmentLib.catalog import import_model
try:
    import_model(sys.argv[1], "evil-v1.0.0")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_card_naming_this_prints_nothing_and_a_path_outside_the_bundle_is_refused_at_import(
    tiny_bundle,
    tmp_path,
    home,  # noqa: F811
):
    import shutil

    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "b"))
    _card(bundle, package="this")
    proc = subprocess.run([sys.executable, "-c", CARD_IMPORT, str(bundle)], capture_output=True, encoding="utf-8",
                          env=dict(SUBPROCESS_ENV, TEXTSEGMENT_HOME=str(home)))  # fmt: skip
    assert "Beautiful is better than ugly" not in proc.stdout + proc.stderr
    assert "not one TextSegment knows" in proc.stdout, proc.stdout + proc.stderr
    outside = tmp_path / "encoder"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    for path in (str(outside), "../encoder"):
        _card(bundle, package=None, path=path)
        proc = subprocess.run([sys.executable, "-c", CARD_IMPORT, str(bundle)], capture_output=True,
                              encoding="utf-8", env=dict(SUBPROCESS_ENV, TEXTSEGMENT_HOME=str(home)))  # fmt: skip
        assert "inside the bundle" in proc.stdout, proc.stdout + proc.stderr
    os.symlink(outside, bundle / "enc")
    _card(bundle, package=None, path="enc")
    proc = subprocess.run([sys.executable, "-c", CARD_IMPORT, str(bundle)], capture_output=True, encoding="utf-8",
                          env=dict(SUBPROCESS_ENV, TEXTSEGMENT_HOME=str(home)))  # fmt: skip
    assert "leads outside the bundle" in proc.stdout, proc.stdout + proc.stderr
    assert not (home / "evil-v1.0.0").exists()
