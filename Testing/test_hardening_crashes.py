"""A traceback is a bug: the crashes and hangs an audit found, each ending in a message and a non-zero exit code
(issue 30, parts 2 and 4). Real files, the tiny real model, the CLI in this process (subprocesses where a test needs a
read-only folder or must not hang)."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest_http import entry, home, tiny, write_catalog  # noqa: F401
from fuzz_helpers import SUBPROCESS_ENV, cli, digest, one_torch_thread, seg, small_volume, snapshot, temporary_files


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def scan(tmp_path) -> Path:
    return small_volume(tmp_path / "in.nii.gz")


# --- devices ------------------------------------------------------------------------------------------------------
def test_a_device_that_is_not_there_is_a_message_before_anything_is_done(tiny_bundle, scan, tmp_path, capsys,
                                                                           monkeypatch):  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine's answer, on any machine
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    before = snapshot(tmp_path)
    for device in ("cuda", "mps"):
        code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", tmp_path / "o" / "x.nii.gz",
                           "--device", device)  # fmt: skip
        assert code == 2 and f"device '{device}' was asked for" in err and "Traceback" not in err, err
        code, _, err = cli(capsys, "demo", "--model", tiny_bundle, "--input", scan, "--prompt", "brain", "--output",
                           tmp_path / "demo", "--device", device)  # fmt: skip
        assert code == 2 and f"device '{device}' was asked for" in err, err
    assert snapshot(tmp_path) == before and not (tmp_path / "demo").exists() and not (tmp_path / "o").exists()


# --- a read-only model cache ---------------------------------------------------------------------------------------
def _run_read_only(folder: Path, args, env):
    """Run the CLI with ``folder`` read-only: by its mode for a normal user; for root (whom modes do not stop) in a
    mount namespace of its own where the folder is mounted read-only."""
    command = [sys.executable, "-m", "TextSegmentLib", *map(str, args)]
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            os.chmod(p, os.stat(p).st_mode & ~0o222)
        try:
            return subprocess.run(command, capture_output=True, encoding="utf-8", env=env, timeout=300)
        finally:
            for p in [folder, *folder.rglob("*")]:
                os.chmod(p, os.stat(p).st_mode | 0o200)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: no way to make a read-only folder here")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(folder), *command], capture_output=True,
                          encoding="utf-8", env=env, timeout=300)  # fmt: skip
    if "mount:" in proc.stderr or "unshare:" in proc.stderr:
        pytest.skip(f"running as root where no read-only mount can be made: {proc.stderr.strip()[:200]}")
    return proc


def test_a_read_only_model_cache_with_a_leftover_tmp_folder(home, tiny, tmp_path):
    write_catalog(home.parent / "Resources" / "models.json", [])
    (home / ".tmp" / "tiny-v1.0.0.leftover").mkdir(parents=True)
    (home / ".locks").mkdir()
    env = dict(SUBPROCESS_ENV, TEXTSEGMENT_HOME=str(home), TEXTSEGMENT_CATALOG=os.environ["TEXTSEGMENT_CATALOG"])
    for args in (["models", "import", tiny["bundle"]], ["models", "import", tiny["zip"], "--id", "tiny-v1.0.0"]):
        proc = _run_read_only(home, args, env)
        assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot write to the model cache" in proc.stderr and str(home) in proc.stderr, proc.stderr
    assert not (home / "tiny-v1.0.0").exists()


# --- damaged headers -----------------------------------------------------------------------------------------------
def _nan_vox_offset(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[108:112] = struct.pack("<f", float("nan"))
    path.write_bytes(bytes(data))


def test_an_output_with_a_nan_vox_offset_fails_its_case_and_the_batch_goes_on(tiny_bundle, tmp_path, capsys):
    cases = tmp_path / "cases"
    for name in ("a", "b"):
        small_volume(cases / f"{name}.nii.gz", seed=len(name))
    out = tmp_path / "out"
    code, _, err = seg(capsys, tiny_bundle, cases, "--prompt", "brain", "--output", out, "--format", ".nii")
    assert code == 0, err
    damaged = out / "a.nii"
    (out / "b.nii").unlink()
    _nan_vox_offset(damaged)
    before = digest(damaged)
    code, _, err = seg(capsys, tiny_bundle, cases, "--prompt", "brain", "--output", out, "--format", ".nii")
    assert code == 1 and "Traceback" not in err, err
    assert "vox_offset" in err and "segmented 1, skipped 0, failed 1" in err, err
    assert digest(damaged) == before and (out / "b.nii").is_file()
    code, _, err = seg(capsys, tiny_bundle, damaged, "--prompt", "brain", "--output", tmp_path / "c.nii.gz")
    assert code == 2 and "vox_offset" in err and "Traceback" not in err, err


# --- hand-edited and hostile files ---------------------------------------------------------------------------------
def test_jobs_files_and_catalogs_nested_100000_deep(tiny_bundle, home, tmp_path, capsys):
    deep = "[" * 100000 + "]" * 100000
    (tmp_path / "jobs.json").write_text(deep)
    code, _, err = seg(capsys, tiny_bundle, "--jobs", tmp_path / "jobs.json")
    assert code == 2 and "nested too deeply" in err and "Traceback" not in err, err
    catalog = home.parent / "Resources" / "models.json"
    catalog.parent.mkdir(parents=True)
    catalog.write_text('{"models": ' + deep + "}")
    code, _, err = cli(capsys, "models", "list")
    assert code == 2 and "nested too deeply" in err and "Traceback" not in err, err


def test_a_catalog_that_is_a_fifo_or_names_a_fifo_never_blocks(home, tiny, tmp_path):
    catalog = home.parent / "Resources" / "models.json"
    catalog.parent.mkdir(parents=True)
    os.mkfifo(catalog)
    env = dict(SUBPROCESS_ENV, TEXTSEGMENT_HOME=str(home), TEXTSEGMENT_CATALOG=str(catalog))
    run = [sys.executable, "-m", "TextSegmentLib", "models"]
    proc = subprocess.run(run + ["list"], capture_output=True, encoding="utf-8", env=env, timeout=120)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr, proc.stderr
    catalog.unlink()
    fifo = tmp_path / "tiny-v1.0.0.zip"
    os.mkfifo(fifo)
    write_catalog(catalog, [entry("tiny-v1.0.0", tiny["zip"], [fifo.as_uri()])])
    proc = subprocess.run(run + ["download", "tiny-v1.0.0", "--retries", "0"], capture_output=True,
                          encoding="utf-8", env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "not a regular file" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_an_output_name_too_long_for_the_file_system_is_refused_before_computing(tiny_bundle, scan, tmp_path, capsys):
    before = snapshot(tmp_path)
    for out in (tmp_path / ("d" * 300) / "labels.nii.gz", tmp_path / ("n" * 235 + ".nii.gz")):
        code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
        assert code == 2 and "this file system allows" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before and temporary_files(tmp_path) == []


def test_demo_never_writes_onto_its_input_and_leaves_no_empty_folder(tiny_bundle, tmp_path, capsys):
    folder = tmp_path / "scans"
    scan = small_volume(folder / "segments.nii.gz")
    before = snapshot(tmp_path)
    for output in (folder, scan):
        code, _, err = cli(capsys, "demo", "--model", tiny_bundle, "--device", "cpu", "--input", scan, "--prompt",
                           "brain", "--output", output)  # fmt: skip
        assert code == 2 and ("is the input" in err or "is a file" in err) and "Traceback" not in err, err
    assert snapshot(tmp_path) == before
    missing = tmp_path / "new" / "demo"
    code, _, err = cli(capsys, "demo", "--model", tmp_path / "no-model", "--device", "cpu", "--input", scan,
                       "--prompt", "brain", "--output", missing)  # fmt: skip
    assert code == 2 and "Traceback" not in err, err
    assert not (tmp_path / "new").exists() and snapshot(tmp_path) == before


# --- smaller -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-5", "x", "1.5"])
def test_retries_and_timeouts_must_make_sense(home, capsys, value):
    code, _, err = cli(capsys, "models", "download", "tiny-v1.0.0", "--retries", value)
    assert code == 2 and "--retries" in err and "whole number >= 0" in err, err
    code, _, err = cli(capsys, "models", "download", "tiny-v1.0.0", "--timeout", "-" + value.lstrip("-"))
    assert code == 2 and "--timeout" in err, err
    from TextSegmentLib.catalog import DownloadOptions

    with pytest.raises(ValueError, match="retries must be a whole number"):
        DownloadOptions(retries=-5)


def test_a_prompt_that_is_not_text_is_a_message_in_the_api(tiny_bundle, scan):
    from TextSegmentLib.engine import InputError, Segmenter

    segmenter = Segmenter(str(tiny_bundle), device="cpu")
    for prompts in (5, [5], ["brain", 3.5], [None], b"brain"):
        with pytest.raises(InputError, match="prompt"):
            segmenter.segment(str(scan), prompts)


def test_a_folder_at_the_report_path_is_found_before_computing(tiny_bundle, scan, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    Path(str(out) + ".json").mkdir()
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, "--overwrite")
    assert code == 2 and "is an existing folder" in err and str(out) + ".json" in err, err
    assert not out.exists()


def test_an_identical_rerun_of_a_batch_written_into_its_input_folder(tiny_bundle, tmp_path, capsys):
    cases = tmp_path / "cases"
    for name in ("a", "b"):
        small_volume(cases / f"{name}.nii.gz", seed=len(name))
    args = ("--prompt", "brain", "--output", cases, "--format", ".nrrd")
    code, _, err = seg(capsys, tiny_bundle, cases, *args)
    assert code == 0, err
    written = snapshot(cases)
    code, _, err = seg(capsys, tiny_bundle, cases, *args)
    assert code == 0 and "Traceback" not in err, err
    assert snapshot(cases) == written  # nothing done twice, nothing new (outputs are not taken for new inputs)
